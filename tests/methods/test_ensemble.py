"""The deep ensemble: members trained like the MAP row, the shared warm start counted once."""
import pytest
import torch

from pyro_node_uq.data import load_problem

TINY = {"num_train": 3, "num_test": 2, "num_extrapolation": 2, "num_times": 11}


def test_ensemble_members_are_trained_like_the_map_row(monkeypatch):
    """Members 1.. get the ensemble's MAP options (``lr`` included), not run_map's defaults; member 0 is the
    shared MAP fit (the warm start) and its cost is counted once."""
    from pyro_node_uq.methods import ensemble, run_map

    problem = load_problem("chemical", **TINY)
    model = problem.default_model()
    first = run_map(model, problem.train, num_steps=4, lr=5e-3, progress_bar=False)
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return run_map(*args, **kwargs)

    monkeypatch.setattr(ensemble, "run_map", spy)
    res = ensemble.run_ensemble(model, problem.train, warm_start=first, num_members=3, num_steps=4, lr=5e-3,
                                progress_bar=False)
    assert res.num_draws == 3 and len(calls) == 2
    assert all(c["lr"] == 5e-3 and c["num_steps"] == 4 for c in calls)
    assert [c["seed"] for c in calls] == [1, 2]
    assert res.num_model_evals == 3 * first.num_model_evals  # the shared member 0 once, two members trained alike


def test_members_are_seeded_apart_and_stacked_as_chains():
    """Without a warm start every member is fitted here, from seeds ``seed, seed + 1``: member ``i`` is chain
    ``i`` and two members differ (different initialisations)."""
    from pyro_node_uq.methods import run_ensemble, run_map
    from pyro_node_uq.methods.common import map_values

    problem = load_problem("chemical", **TINY)
    model = problem.default_model()
    res = run_ensemble(model, problem.train, num_members=2, num_steps=2, seed=5, progress_bar=False)
    alone = run_map(model, problem.train, num_steps=2, seed=6, progress_bar=False)
    name = "R.0.bias"
    assert res.samples[name].shape[:2] == (2, 1) and not torch.equal(res.samples[name][0], res.samples[name][1])
    torch.testing.assert_close(res.samples[name][1, 0], map_values(alone)[name])


@pytest.mark.parametrize("bad, error", [(0, ValueError), (True, TypeError), ("3", TypeError)])
def test_a_bad_member_count_is_refused_by_name(bad, error):
    from pyro_node_uq.methods import run_ensemble

    with pytest.raises(error, match="num_members: expected an integer >= 1"):  # before the model is looked at
        run_ensemble(None, None, num_members=bad, progress_bar=False)
