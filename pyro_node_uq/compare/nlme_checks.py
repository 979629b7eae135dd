"""A comparison's simulation-based checks of a hierarchical model, per method: NPDE with their summary tests
(CSV and a report line), a prediction-corrected VPC against time after dose (PNG) for the fitted units and for
the new units, and the fitted units' random effects against their covariates (PNG)."""
import os

import pandas as pd
import torch

from ..diagnostics.eta_plots import plot_eta_covariates
from ..diagnostics.nlme import individual_effects, population_predictions
from ..diagnostics.npde import npde, npde_tests, simulate_replicates
from ..diagnostics.vpc import plot_vpc, time_after_dose, vpc_table
from ..models import HierarchicalNODEModel
from ..utils.persist import atomic_save

__all__ = ["write_nlme_checks"]

_SPLITS = {"train": "fitted units", "test": "new units"}
_NPDE_TEXT = ("Normalised prediction distribution errors (Brendel et al. 2006, decorrelated per unit as in Comets "
              "et al. 2008) of the observations against data sets simulated from each fit for the same design (new "
              "random effects, new noise): N(0, 1) for a model that describes the data.  Tests: t-test of mean 0, "
              "chi-square test of variance 1, Shapiro-Wilk (needs scipy), global = Bonferroni over the three; a "
              "small p-value flags a misfit.  Per observation: `nlme/<method>_npde.csv`; prediction-corrected VPCs "
              "are among the figures.")


def _save_csv(frame, path):
    atomic_save(path, lambda tmp: frame.to_csv(tmp, index=False))


def _split_checks(method, result, units, split, problem, out, num_replicates, seed):
    """NPDE rows and the VPC of one split: ``(npde frame, test summary, figure entry)``."""
    mask = units.mask
    sims = simulate_replicates(result, units, num_replicates, seed)  # (K, N, T)
    y = units.y[..., 0]
    errors, discrepancies = npde(y, sims, mask)
    times = units.unit_times if units.t.dim() == 2 else units.t.expand(len(units), -1)
    ids = units.ids if units.ids is not None else torch.arange(len(units))
    rows = pd.DataFrame({"SPLIT": split, "ID": ids[:, None].expand(mask.shape)[mask].tolist(),
                         "TIME": times[mask].tolist(), "DV": y[mask].tolist(), "NPDE": errors.tolist(),
                         "PD": discrepancies.tolist()})
    pred = population_predictions(result, units)
    tad = time_after_dose(units)[mask]
    frame, corrected = vpc_table(tad, y[mask], pred[mask], sims[:, mask])
    rel = f"figures/vpc_{method}_{split}.png"
    plot_vpc(frame, tad, corrected, os.path.join(out, rel), time_unit=problem.time_unit or None,
             obs_name=problem.obs_names[0] if problem.obs_names else None,
             title=f"{method}: prediction-corrected VPC, {_SPLITS[split]} ({num_replicates} simulated data sets)")
    _save_csv(frame, os.path.join(out, f"nlme/{method}_vpc_{split}.csv"))
    return rows, npde_tests(errors), (f"{method}: prediction-corrected VPC, {_SPLITS[split]}", rel)


def write_nlme_checks(method, result, problem, out, ctx, num_replicates=300, seed=0):
    """Write ``nlme/<method>_npde.csv`` (one row per observation: ``SPLIT, ID, TIME, DV, NPDE, PD``),
    ``nlme/<method>_npde_tests.csv`` (per split: mean, variance, skewness, kurtosis and the p-values of
    :func:`~pyro_node_uq.diagnostics.npde.npde_tests`), ``figures/vpc_<method>_<split>.png`` with its table
    ``nlme/<method>_vpc_<split>.csv`` for the fitted (``train``) and new (``test``) units, and
    ``figures/eta_covariates_<method>.png``; the NPDE tests go into the report.  Models without random effects
    (or data without units) are left alone.

    :param int num_replicates: simulated data sets for the NPDE and the VPC.
    :returns: the figures written, as ``(caption, relative path)``.
    """
    model = result.model
    if not isinstance(model, HierarchicalNODEModel) or not model.eta_dim or not hasattr(problem.train, "doses"):
        return []
    os.makedirs(os.path.join(out, "nlme"), exist_ok=True)
    os.makedirs(os.path.join(out, "figures"), exist_ok=True)
    figs, rows, tests = [], [], []
    for split, label in _SPLITS.items():
        units = getattr(problem, split, None)
        if units is None or not bool(units.mask.any()):
            continue
        units = result.in_fit_dtype(units)
        frame, summary, fig = _split_checks(method, result, units, split, problem, out, num_replicates, seed)
        rows.append(frame)
        tests.append({"SPLIT": split, **summary})
        figs.append(fig)
        ctx.section_row("NPDE", _NPDE_TEXT, {
            "method": method, "units": label, "observations": summary["n"], "mean": round(summary["mean"], 3),
            "variance": round(summary["variance"], 3), "p (mean 0)": f"{summary['p_mean']:.3g}",
            "p (variance 1)": f"{summary['p_variance']:.3g}", "p (Shapiro-Wilk)": f"{summary['p_shapiro']:.3g}",
            "p (global)": f"{summary['p_global']:.3g}"})
    if rows:
        _save_csv(pd.concat(rows, ignore_index=True), os.path.join(out, f"nlme/{method}_npde.csv"))
        _save_csv(pd.DataFrame(tests), os.path.join(out, f"nlme/{method}_npde_tests.csv"))
    train = problem.train
    eta = individual_effects(result, random_part=True)
    names = [str(e) for e in model.effects]
    cov_names = list(train.covariate_names or []) if train.covariates is not None else []
    rel = f"figures/eta_covariates_{method}.png"
    plot_eta_covariates(eta, train.covariates if cov_names else None, names, cov_names, os.path.join(out, rel),
                        title=f"{method}: fitted units' random effects (posterior means"
                        + (", less the covariate model's mean)" if model.covariate_dim else ")"))
    figs.append((f"{method}: random effects against covariates", rel))
    return figs
