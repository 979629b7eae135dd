"""The deep ensemble: members trained like the MAP row, the shared warm start counted once."""
import pytest
import torch

from pyro_node_uq.data import load_problem

TINY = {"num_train": 3, "num_test": 2, "num_extrapolation": 2, "num_times": 11}


def test_ensemble_members_are_trained_like_the_map_row(monkeypatch):
    """Fitted one after another, members 1.. get the ensemble's MAP options (``lr`` included), not run_map's defaults; member 0 is the
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
                                progress_bar=False, batched=False)
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


@pytest.mark.parametrize("scale", [0.02, "learned"])
def test_batched_members_equal_their_fits_alone_with_the_start_search(scale):
    """Batched (members x starts, then members), each member equals :func:`run_map` alone with its seed (float64,
    a few steps): the same best start, the same values (and learned noise scale); member 0 is the warm start's."""
    from pyro_node_uq.methods import run_ensemble, run_map
    from pyro_node_uq.methods.common import map_values

    problem = load_problem("chemical", **TINY)
    model = problem.default_model(R_hidden=(4,), scale=scale)
    options = {"num_steps": 8, "num_starts": 3, "start_steps": 4, "lr": 0.02}
    first = run_map(model, problem.train, seed=2, progress_bar=False, **options)
    res = run_ensemble(model, problem.train, warm_start=first, num_members=3, seed=2, progress_bar=False, **options)
    assert any("fitted as one batched model" in n for n in res.notes)
    assert any("best of 3 MAP starts" in n for n in res.notes)
    for i, seed in enumerate((2, 3, 4)):
        alone = first if i == 0 else run_map(model, problem.train, seed=seed, progress_bar=False, **options)
        for name, value in map_values(alone).items():
            torch.testing.assert_close(res.samples[name][i, 0], value, rtol=1e-9, atol=1e-9)
    one = run_ensemble(model, problem.train, num_members=1, seed=3, progress_bar=False, **options)
    torch.testing.assert_close(one.samples["R.0.weight"][0, 0], res.samples["R.0.weight"][1, 0], rtol=1e-9, atol=1e-9)
    assert one.wall_time > 0 and one.num_model_evals > 0
    if scale == "learned":  # member 0's scale in the param state; each member's own per draw
        alone = run_map(model, problem.train, seed=3, progress_bar=False, **options)
        torch.testing.assert_close(model.noise_scale(one.param_state), model.noise_scale(alone.param_state),
                                   rtol=1e-9, atol=1e-12)
        assert res.draw_params["sigma"].shape == (3, 1, problem.obs_dim)  # per member: see the test below
    else:
        assert one.param_state == {"params": {}, "constraints": {}} and one.draw_params is None


@pytest.mark.parametrize("batched", [True, False])
def test_each_member_predicts_with_its_own_learned_noise_scale(batched):
    """A learned noise scale: each member's own (as its fit alone leaves it) is its draws' noise in ``predict`` and
    in the noise scale the scores use, batched or one by one (float64); member 0's stays the param state's."""
    from pyro_node_uq.diagnostics import to_inference_data
    from pyro_node_uq.methods import MethodResult, run_ensemble, run_map

    problem = load_problem("chemical", **TINY)
    model = problem.default_model(R_hidden=(4,), scale="learned")
    options = {"num_steps": 80, "num_starts": 1, "lr": 0.03}
    res = run_ensemble(model, problem.train, num_members=3, seed=5, batched=batched, progress_bar=False, **options)
    assert any("batched" in n for n in res.notes) == batched
    own = torch.stack([model.noise_scale(run_map(model, problem.train, seed=s, progress_bar=False,
                                                 **options).param_state) for s in (5, 6, 7)])
    assert float((own[1:] / own[0] - 1).abs().min()) > 1e-4  # the members' scales differ
    torch.testing.assert_close(res.draw_params["sigma"][:, 0], own, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(model.noise_scale(res.param_state), own[0], rtol=1e-9, atol=1e-12)
    pred = res.predict(problem.test, num_samples=6, seed=0)  # members 0, 1, 2, 0, 1, 2
    torch.testing.assert_close(pred["sigma"], own.repeat(2, 1), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(model.noise_scale(res.param_state, pred)[:, 0, 0], own.repeat(2, 1), rtol=1e-9,
                               atol=1e-12)
    state = res.param_state
    for i in range(3):  # each draw's means are its member's alone
        alone = MethodResult("m", model, samples={k: v[i:i + 1] for k, v in res.samples.items()}, param_state=state)
        torch.testing.assert_close(pred["y_mean"][i], alone.predict(problem.test, num_samples=1)["y_mean"][0],
                                   rtol=1e-9, atol=1e-12)
    idata = to_inference_data(res, problem.test)  # the members' own scales in the posterior and the likelihood
    assert idata.posterior["sigma"].shape == (3, 1, problem.obs_dim)
    torch.testing.assert_close(torch.as_tensor(idata.posterior["sigma"].values[:, 0]), own, rtol=1e-9, atol=1e-12)
    y_mean = torch.as_tensor(idata.posterior["y_mean"].values[:, 0])
    expected = torch.distributions.Normal(y_mean, own[:, None, None]).log_prob(problem.test.y)
    torch.testing.assert_close(torch.as_tensor(idata.log_likelihood["obs"].values[:, 0]), expected, rtol=1e-9,
                               atol=1e-9)


@pytest.mark.parametrize("case", ["own params", "callback", "not batched"])
def test_members_are_fitted_one_by_one_where_a_batch_cannot_mirror_run_map(monkeypatch, case):
    """A model with its own ``pyro.param`` (the members would share it), an option the batch does not mirror, or
    ``batched=False``: one :func:`run_map` per member, as before."""
    from pyro_node_uq.methods import ensemble, run_map

    problem = load_problem("chemical", **TINY)
    model = problem.default_model(R_hidden=(4,), scale="learned" if case == "own params" else 0.02)
    model.batchable_params = ()  # with "own params": a param the model cannot take batched
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs["seed"])
        return run_map(*args, **kwargs)

    monkeypatch.setattr(ensemble, "run_map", spy)
    options = {"callback": lambda step, loss: False} if case == "callback" else {}
    res = ensemble.run_ensemble(model, problem.train, num_members=2, num_steps=3, seed=4, progress_bar=False,
                                batched=case != "not batched", **options)
    assert calls == [4, 5] and res.num_draws == 2
    assert not any("batched" in n for n in res.notes)
    if case == "own params":
        assert "sigma" in res.param_state["params"]  # member 0's learned noise scale, for predictions


def test_a_batched_member_that_runs_out_of_budget_warns():
    from pyro_node_uq.methods import run_ensemble
    from pyro_node_uq.methods.convergence import BudgetExhaustedWarning

    problem = load_problem("chemical", **TINY)
    with pytest.warns(BudgetExhaustedWarning, match="members with seeds \\[0, 1\\] converged"):
        run_ensemble(problem.default_model(R_hidden=(4,)), problem.train, num_members=2, num_steps=4,
                     stop_rtol=1e-12, stop_window=1, record_errors=False, progress_bar=False)
