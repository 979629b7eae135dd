"""The eta-vs-covariate plot: one panel per effect and covariate, titled with their correlation."""
import warnings

import matplotlib
import pytest
import torch

from pyro_node_uq.diagnostics.eta_plots import plot_eta_covariates

matplotlib.use("Agg")


def test_panels_titles_and_correlations_and_no_warning_for_fitted_effects():
    g = torch.Generator().manual_seed(1)
    wt = 50 + 30 * torch.rand(30, 1, generator=g, dtype=torch.float64)
    age = 20 + 40 * torch.rand(30, 1, generator=g, dtype=torch.float64)
    eta = torch.cat([0.02 * (wt - 65), -0.01 * (age - 40)], 1).requires_grad_()  # effects straight from a fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_eta_covariates(eta, torch.cat([wt, age], 1), ["CL", "V"], ["WT", "AGE"])
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4
    assert titles[0] == "eta[CL] vs WT: r = 1.00" and titles[3] == "eta[V] vs AGE: r = -1.00"


def test_without_covariates_one_histogram_per_effect():
    fig = plot_eta_covariates(torch.randn(12, 2, dtype=torch.float64), None, ["CL", "V"], [])
    assert [ax.get_title() for ax in fig.axes] == ["eta[CL]", "eta[V]"]


def test_names_must_match_the_columns():
    with pytest.raises(ValueError, match="eta_names: expected 2 names"):
        plot_eta_covariates(torch.zeros(5, 2), None, ["CL"], [])
    with pytest.raises(ValueError, match="covariate_names: expected 1 names"):
        plot_eta_covariates(torch.zeros(5, 2), torch.ones(5, 1), ["CL", "V"], ["WT", "AGE"])
