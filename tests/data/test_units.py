"""Units and their two splits: held-out units and held-out later observations."""
import functools
import operator

import pytest
import torch

from pyro_node_uq.data import Units, split_by_time, split_units, units_problem
from pyro_node_uq.distributions import DoseSchedule


def _units(n=10, T=9):
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(n, T, generator=gen) < 0.7
    mask[:, 0] = True
    doses = DoseSchedule.from_lists([[0.0, 0.0]] * n, torch.arange(1.0, 2.0 * n + 1).reshape(n, 2).tolist())
    return Units(t=torch.arange(float(T)), x=None, y=torch.randn(n, T, 1, generator=gen), mask=mask,
                 doses=doses, covariates=torch.arange(float(n))[:, None])


def test_split_units_is_seeded_disjoint_and_carries_doses():
    u = _units()
    train, test = split_units(u, 0.3, seed=1)
    again, _ = split_units(u, 0.3, seed=1)
    assert torch.equal(train.ids, again.ids) and len(test) == 3 and test.new_units and not train.new_units
    assert set(train.ids.tolist()).isdisjoint(test.ids.tolist())
    assert sorted(train.ids.tolist() + test.ids.tolist()) == list(range(10))
    for part in (train, test):  # every per-unit field follows its unit
        assert torch.equal(part.doses.amount[:, 0], 2.0 * part.ids + 1) and torch.equal(part.covariates[:, 0], part.ids.float())
    with pytest.raises(ValueError, match="test_fraction"):
        split_units(u, 1.5)


def test_split_by_time_partitions_each_units_observations():
    u = _units()
    early, late = split_by_time(u, 1 / 3)
    assert not (early.mask & late.mask).any() and torch.equal(early.mask | late.mask, u.mask)
    for i in range(len(u)):
        n = int(u.mask[i].sum())
        assert int(early.mask[i].sum()) == -(-n // 3)  # ceil
        last_early = early.mask[i].nonzero().max()
        assert (late.mask[i].nonzero() > last_early).all()  # later observations only
    assert late.extras["doses"] is u.doses  # future doses are known


def test_time_fraction_one_fits_every_observation_and_has_no_extrapolation_split():
    u = _units()
    early, late = split_by_time(u, 1)
    assert torch.equal(early.mask, u.mask) and not late.mask.any()
    with pytest.raises(ValueError, match=r"fraction: expected a number in \(0, 1\]"):
        split_by_time(u, 1.5)
    p = units_problem("toy", "", u, time_fraction=1, obs_names=("y",))
    assert p.extrapolation is None and list(p.splits) == ["train", "test"]
    assert int(p.train.mask.sum()) + int(p.test.mask.sum()) == int(u.mask.sum())


def test_refine_grid_keeps_every_observation():
    from pyro_node_uq.data import refine_grid

    u = _units(T=5)
    u.t = torch.tensor([0.0, 0.5, 3.0, 3.2, 10.0])
    r = refine_grid(u, 1.0)
    assert (r.t[1:] - r.t[:-1]).max() <= 1.0 + 1e-12 and len(r.t) > len(u.t)
    keep = torch.searchsorted(r.t, u.t)
    assert torch.equal(r.y[:, keep], u.y) and torch.equal(r.mask[:, keep], u.mask)
    assert int(r.mask.sum()) == int(u.mask.sum())


def test_unit_folds_hold_every_unit_out_once():
    from pyro_node_uq.data import unit_folds

    u = _units(n=10)
    folds = unit_folds(u, 4, seed=3)
    assert [len(test) for _, test in folds] == [3, 3, 2, 2]
    held = functools.reduce(operator.iadd, (test.ids.tolist() for _, test in folds), [])
    assert sorted(held) == list(range(10))  # each unit exactly once
    for train, test in folds:
        assert test.new_units and not train.new_units
        assert sorted(train.ids.tolist() + test.ids.tolist()) == list(range(10))
        assert torch.equal(train.covariates[:, 0], train.ids.float())  # per-unit fields follow their unit
    _, first = split_units(u, 0.3, seed=3)
    assert torch.equal(folds[0][1].ids, first.ids)  # fold 0 is the seeded split of the same size
    assert [t.ids.tolist() for _, t in unit_folds(u, 4, seed=3)] == [t.ids.tolist() for _, t in folds]
    for bad in (1, 11, 2.0, True):
        with pytest.raises(ValueError, match="num_folds"):
            unit_folds(u, bad)


def test_units_problem_folds():

    u = _units(n=8)
    problems = [units_problem("toy", "", u, num_folds=4, fold=k, obs_names=("y",)) for k in range(4)]
    assert sorted(functools.reduce(operator.iadd, (p.test.ids.tolist() for p in problems), [])) == list(range(8))
    assert all(len(p.train) == 6 and torch.equal(p.train.ids, p.extrapolation.ids) for p in problems)
    assert torch.equal(problems[0].test.ids, units_problem("toy", "", u, obs_names=("y",)).test.ids)
    with pytest.raises(ValueError, match="fold"):
        units_problem("toy", "", u, num_folds=4, fold=4)


def test_theophylline_and_event_file_folds():
    """``theophylline_events`` and ``events_problem`` take the folds: 4 x 3 subjects, each held out once, fold 0 the
    default split, all on one union grid (so held-out predictions pool across folds)."""
    from pyro_node_uq.data import events_problem, load_problem
    from pyro_node_uq.data.pk import theophylline_table

    default = load_problem("theophylline_events")
    folds = [load_problem("theophylline_events", num_folds=4, fold=k) for k in range(4)]
    assert sorted(functools.reduce(operator.iadd, (p.test.ids.tolist() for p in folds), [])) == list(range(1, 13))  # subject IDs
    assert torch.equal(folds[0].test.ids, default.test.ids)
    assert all(torch.equal(p.test.t, default.test.t) for p in folds)
    assert default.model_kwargs["equilibrium"] == "zero"
    table = theophylline_table()
    held = [events_problem(table, covariates=["WT"], num_folds=4, fold=k).test.ids.tolist() for k in range(4)]
    assert sorted(functools.reduce(operator.iadd, held, [])) == list(range(1, 13))


def test_positive_covariates_enter_through_their_logarithm():
    """A covariate with only positive values (weight) enters as ``log(WT)`` (a power model of the parameters);
    a 0/1 indicator as it is; ``log_covariates="none"`` keeps both; anything else is refused, naming the argument."""
    from pyro_node_uq.data import events_problem
    from pyro_node_uq.data.pk import theophylline_table

    table = theophylline_table("mg")
    table["SEX"] = (table.ID % 2).astype(float)
    p = events_problem(table, covariates=["WT", "SEX"])
    plain = events_problem(table, covariates=["WT", "SEX"], log_covariates="none")
    assert p.train.covariate_names == ("log(WT)", "SEX") and plain.train.covariate_names == ("WT", "SEX")
    torch.testing.assert_close(p.train.covariates[:, 0], plain.train.covariates[:, 0].log())
    torch.testing.assert_close(p.test.covariates[:, 1], plain.test.covariates[:, 1])
    torch.testing.assert_close(p.model_kwargs["covariate_loc"][0], plain.train.covariates[:, 0].log().mean())
    with pytest.raises(ValueError, match="log_covariates: expected 'positive' or 'none'"):
        events_problem(table, covariates=["WT"], log_covariates="all")
