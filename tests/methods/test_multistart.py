import pytest
import torch
from pyro import poutine

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_map
from pyro_node_uq.methods.multistart import best_start


@pytest.fixture(scope="module")
def tiny():
    return load_problem("chemical", num_train=3, num_times=11)


def _log_joint(model, values, split):
    with torch.no_grad():
        trace = poutine.trace(poutine.condition(model, values)).get_trace(*split.args, **split.kwargs)
        return float(trace.log_prob_sum())


def test_batched_starts_score_each_start_by_its_own_log_joint(tiny):
    model = tiny.default_model(R_hidden=(4,))
    values, info = best_start(model, tiny.train, num_starts=3, num_steps=15, lr=1e-2, seed=1, progress_bar=False)
    assert info["batched"] and len(info["log_joints"]) == 3
    assert info["best"] == max(range(3), key=info["log_joints"].__getitem__)
    # the kept values, put into the unbatched model, have the log joint the batched trace gave that start
    assert _log_joint(model, values, tiny.train) == pytest.approx(info["log_joints"][info["best"]], rel=1e-4)
    assert info["num_model_evals"] >= 3 * 15 and info["wall_time"] > 0
    assert set(values) == {"R.0.weight", "R.0.bias", "R.1.weight", "R.1.bias"}
    assert values["R.0.weight"].shape == (4, 4)


def test_the_starts_differ_and_the_best_is_not_worse_than_one_start(tiny):
    model = tiny.default_model(R_hidden=(4,))
    _, info = best_start(model, tiny.train, num_starts=4, num_steps=10, lr=1e-2, progress_bar=False)
    assert len({round(v, 3) for v in info["log_joints"]}) == 4  # different initialisations


def test_a_model_with_its_own_params_runs_the_starts_one_after_another(tiny):
    model = tiny.default_model(R_hidden=(4,), scale="learned")
    model.batchable_params = ()  # a param the model cannot take batched
    values, info = best_start(model, tiny.train, num_starts=2, num_steps=5, lr=1e-2, progress_bar=False)
    assert not info["batched"] and len(info["log_joints"]) == 2 and "R.0.bias" in values


def test_a_learned_noise_scale_is_batched_one_per_start(tiny):
    """A NODE's learned noise scale is one of its batchable params: the starts run batched, each with its own scale,
    and each start's log joint is that of its values with its own scale (float64)."""
    from pyro_node_uq.methods.batched_map import fit_batched_map
    from pyro_node_uq.methods.common import init_loc, map_values

    model = tiny.default_model(R_hidden=(4,), scale="learned")
    _, info = best_start(model, tiny.train, num_starts=2, num_steps=5, lr=1e-2, progress_bar=False)
    assert info["batched"] and len(info["log_joints"]) == 2
    fit = fit_batched_map(model, tiny.train, [init_loc(model, s) for s in (0, 1)], num_steps=6, lr=0.05,
                          progress_bar=False)
    for k in range(2):
        alone = run_map(model, tiny.train, seed=k, num_steps=6, lr=0.05, lr_final=5e-3, num_starts=1, stop_rtol=0,
                        record_errors=False, polish_iters=0, progress_bar=False)
        for name, value in map_values(alone).items():
            torch.testing.assert_close(fit.values[k][name], value, rtol=1e-9, atol=1e-9)
        sigma = model.noise_scale(alone.param_state)
        torch.testing.assert_close(fit.params[k]["sigma"], sigma, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(model.noise_scale(fit.param_state(k)), sigma, rtol=1e-9, atol=1e-12)


def test_run_map_starts_from_the_best_start_and_counts_its_cost(tiny):
    model = tiny.default_model(R_hidden=(4,))
    single = run_map(model, tiny.train, num_steps=10, num_starts=1, progress_bar=False)
    multi = run_map(model, tiny.train, num_steps=10, num_starts=3, start_steps=5, progress_bar=False)
    assert multi.num_model_evals >= single.num_model_evals + 3 * 5
    assert any("best of 3 MAP starts" in n for n in multi.notes)
    with pytest.raises(ValueError, match="num_starts"):
        run_map(model, tiny.train, num_steps=2, num_starts=0, progress_bar=False)


#: MAP test NLL on ``viscoelastic`` for method seeds 0-4 with the previous defaults (one Glorot start, 800 steps,
#: tenfold learning-rate decay, no stopping rule), measured by ``benchmarks/convergence.py run --config today``
#: running that package version itself (a re-creation of those defaults with today's code does not reproduce them)
PREVIOUS_VISCOELASTIC_MAP_NLL = (-1.517, -1.566, -1.571, -1.560, -1.545)


@pytest.mark.slow
def test_map_test_nll_varies_at_most_half_as_much_over_seeds_as_with_the_previous_defaults():
    """On ``viscoelastic`` (default model and data), over method seeds 0-4: the spread (standard deviation) of MAP's
    test NLL with the registry's defaults (best of several starts, a hundredfold learning-rate decay, convergence
    stop) is at most half that of the previous defaults, and the mean no worse.  In float32, the package's default
    and the precision the previous numbers were measured in (the fits' last digits, and so which of several nearby
    fits a seed ends in, depend on it)."""
    from pyro_node_uq.compare.scoring import score_result
    from pyro_node_uq.methods import METHODS

    torch.set_default_dtype(torch.float32)
    problem = load_problem("viscoelastic")

    def nll(seed):  # scored as the benchmark scores: predictive draws with the method's seed
        fit = run_map(problem.default_model(), problem.train, seed=seed, progress_bar=False,
                      **METHODS["map"].options("viscoelastic"))
        return score_result(fit, problem, {"test": fit.predict(problem.test, num_samples=100, seed=seed)},
                            hidden=False)["test_nll"]

    before = torch.tensor(PREVIOUS_VISCOELASTIC_MAP_NLL)
    after = torch.tensor([nll(s) for s in range(5)])
    assert after.std() <= 0.5 * before.std(), after.tolist()
    assert after.mean() <= before.mean(), after.tolist()
