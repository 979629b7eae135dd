"""Pharmacokinetic problems: the one-compartment closed form by hand, the synthetic study's truth, the
population's own predictive, and the theophylline event table."""
import math

import pytest
import torch

from pyro_node_uq.data.pk import (
    K_ELIM,
    pk_closed_form,
    pk_population_predictive,
    pk_repeated,
    theophylline_table,
)
from pyro_node_uq.distributions import DoseSchedule


def test_closed_form_by_hand():
    """Doses of 2 at t = 0 and 1 at t = 2, k = 0.5, scale 0.25: a sample at a dose time sees that dose."""
    doses = DoseSchedule.from_lists([[0.0, 2.0]], [[2.0, 1.0]])
    t = torch.tensor([0.0, 1.0, 2.0, 3.0])
    got = pk_closed_form(t, doses, torch.tensor([0.5]), torch.tensor([0.25]))[0]
    e = math.exp
    want = [0.25 * 2, 0.25 * 2 * e(-0.5), 0.25 * (2 * e(-1.0) + 1), 0.25 * (2 * e(-1.5) + e(-0.5))]
    torch.testing.assert_close(got, torch.tensor(want))


def test_pk_repeated_observes_its_closed_form_at_its_own_effects_and_doses():
    problem = pk_repeated(num_units=12, num_obs=6, noise=0.1, seed=2)
    for split in (problem.train, problem.test):
        truth = pk_closed_form(split.t, split.doses, K_ELIM * split.eta_true[:, 0].exp(), split.eta_true[:, 1].exp())
        torch.testing.assert_close(split.y_true[..., 0], truth)
        assert set(split.doses.time[split.doses.mask].tolist()) == {0.0, 12.0, 24.0, 36.0}
    train = problem.train
    residual = (train.y - train.y_true)[train.mask]
    assert residual.numel() > 30 and 0.06 < float(residual.std()) < 0.14  # noise std 0.1
    assert len(problem.train) + len(problem.test) == 12


def test_theophylline_table_in_both_dose_units():
    per_kg, mg = theophylline_table(), theophylline_table("mg")
    doses = per_kg[per_kg.EVID == 1]
    assert len(doses) == 12 and (doses.CMT == 2).all() and (doses.TIME == 0).all()
    torch.testing.assert_close(torch.tensor(mg[mg.EVID == 1].AMT.values),
                               torch.tensor((doses.AMT * doses.WT).values))
    assert (per_kg[per_kg.EVID == 0].CMT == 1).all()
    with pytest.raises(ValueError, match="dose_unit: expected 'mg/kg' or 'mg', got 'g'"):
        theophylline_table("g")


def test_pk_population_predictive_is_calibrated_on_many_new_units():
    """The data-generating population's predictive of ``pk_repeated``'s new units covers them at the nominal
    levels once there are many units (200 here: within 0.04; a split's 10 units can be 0.65 or 0.99 by chance),
    and its ``y_mean`` is the closed form at the drawn effects (draws differ between units and samples)."""
    from pyro_node_uq.diagnostics.metrics import score

    problem = pk_repeated(num_units=400, test_fraction=0.5, seed=3)
    pred = pk_population_predictive(problem.test, num_samples=300, seed=1)
    assert pred["obs"].shape == pred["y_mean"].shape == (300, 200, problem.test.t.numel(), 1)
    s = score(pred, problem.test.y, problem.test.mask)
    assert abs(s["coverage_50"] - 0.5) < 0.04 and abs(s["coverage_90"] - 0.9) < 0.04, s
    first = pred["y_mean"][:, :, -1, 0]  # after the last dose: scales with each draw's own effects
    assert first.std(0).min() > 0 and first.std(1).min() > 0
