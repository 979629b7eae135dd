"""Baseline runners on a tiny NODE: shapes, counted evaluations, param isolation, SVGD particle correctness."""
import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import CountingModel, ParticleSVGD
from pyro_node_uq.methods import run_autonormal, run_lowrank, run_map, run_nuts, run_svgd


@pytest.fixture(scope="module")
def problem():
    return load_problem("chemical", num_train=3, num_test=2, num_times=11)


@pytest.fixture(scope="module")
def small(problem):
    model = problem.default_model(R_hidden=(4,))  # 35 weights
    return model, run_map(model, problem.train, num_steps=40, lr=0.05, progress_bar=False)


def test_map_result_and_predict(problem, small):
    model, res = small
    assert res.name == "map" and res.elbo is None and res.stochastic_dim == 0
    assert res.num_model_evals == 1 + 40  # guide prototype trace + one solve per step
    out = res.predict(problem.test, num_samples=5)
    assert out["obs"].shape == out["y_mean"].shape == (5, 2, 11, 2)
    assert out["hidden"].shape == (5, 2, 11, 3)
    assert torch.allclose(out["y_mean"][0], out["y_mean"][4])  # a point mass: identical means


def test_autonormal_counts_and_isolated_params(problem, small):
    model, map_res = small
    a = run_autonormal(model, problem.train, num_steps=10, num_particles=4, warm_start=map_res, progress_bar=False)
    assert a.num_model_evals == map_res.num_model_evals + 1 + 10 * 4
    assert a.stochastic_dim == 35 and a.elbo is not None and a.elbo == a.elbo
    draws = a.posterior_samples(6, seed=3)
    assert draws["R.0.weight"].shape == (6, 4, 4)
    before = a.predict(problem.test, num_samples=4, seed=1)["y_mean"]
    run_lowrank(model, problem.train, num_steps=3, rank=2, warm_start=map_res, progress_bar=False)
    run_autonormal(model, problem.train, num_steps=3, warm_start=map_res, init_scale=0.5, progress_bar=False)
    after = a.predict(problem.test, num_samples=4, seed=1)["y_mean"]
    assert torch.equal(before, after)  # later fits do not leak into this result's parameters


def test_lowrank(problem, small):
    model, map_res = small
    res = run_lowrank(model, problem.train, num_steps=5, rank=3, warm_start=map_res, progress_bar=False)
    assert res.name == "lowrank" and res.stochastic_dim == 35
    assert res.predict(problem.test, num_samples=3)["obs"].shape == (3, 2, 11, 2)


def test_nuts_small_and_refuses_large(problem, small):
    model, map_res = small
    res = run_nuts(model, problem.train, num_samples=4, warmup_steps=3, num_chains=2, max_tree_depth=2,
                   warm_start=map_res, progress_bar=False)
    assert res.samples["R.0.weight"].shape == (2, 4, 4, 4)
    assert set(res.sample_stats) == {"step_size", "acceptance_rate", "diverging", "lp"}
    assert res.sample_stats["acceptance_rate"].shape == (2, 4)
    assert res.num_model_evals > map_res.num_model_evals + 2 * 7  # at least one gradient per step
    assert res.model.on_divergence == "reject" and model.on_divergence == "raise"
    assert res.predict(problem.test, num_samples=None)["obs"].shape == (8, 2, 11, 2)
    assert "log_likelihood" in az.from_pyro(res.mcmc).groups()
    with pytest.raises(ValueError, match="515 latent dimensions, above max_latent_dim=400"):
        run_nuts(problem.default_model(R_hidden=(64,)), problem.train, progress_bar=False)


def test_svgd_node(problem, small):
    model, map_res = small
    res = run_svgd(model, problem.train, num_particles=8, num_steps=3, num_groups=2, warm_start=map_res,
                   progress_bar=False)
    assert res.samples["R.1.weight"].shape == (2, 4, 3, 4)
    assert res.num_model_evals >= map_res.num_model_evals + 3 * 8
    assert res.predict(problem.test, num_samples=None)["y_mean"].shape == (8, 2, 11, 2)
    with pytest.raises(ValueError, match="divisible"):
        run_svgd(model, problem.train, num_particles=6, num_groups=4, warm_start=map_res, progress_bar=False)


def test_particle_svgd_recovers_two_site_gaussian():
    """Two latent sites with different prior scales: the Stein update must act on whole particles."""
    def model():
        pyro.sample("a", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("b", dist.Normal(torch.zeros(3), 3.0).to_event(1))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svgd = ParticleSVGD(model, pyro.infer.RBFSteinKernel(), pyro.optim.Adam({"lr": 0.1}), 40, max_plate_nesting=1)
    for _ in range(600):
        svgd.step()
    p = {k: v.detach().reshape(40, -1) for k, v in svgd.get_named_particles().items()}
    assert p["a"].mean(0).abs().max() < 0.05 and p["b"].mean(0).abs().max() < 0.15
    assert torch.allclose(p["a"].std(0), torch.ones(2), atol=0.1)
    assert torch.allclose(p["b"].std(0), torch.full((3,), 3.0), atol=0.3)


def test_counting_model_plates():
    def model():
        with pyro.plate("trajectories", 3):
            pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.zeros(3))

    counted = CountingModel(model)
    counted()
    with pyro.plate("particles", 5, dim=-2):
        counted()
    assert counted.count == 1 + 5


@pytest.mark.slow
def test_chemical_coverage_map_autonormal_nuts():
    """The benchmark on ``chemical`` (R_hidden=(4,), 35 weights, so NUTS is affordable on a shared CPU).

    Posterior uncertainty must widen the test-trajectory 90% intervals beyond the noise-only MAP predictive.
    Measured (6 train / 8 test trajectories, 21 times, 1500 MAP + 1000 VI steps, NUTS 2 x 100 draws after 100
    warm-up, tree depth 4; 176 s, float64): 90% coverage MAP 0.554, AutoNormal 0.643, NUTS 0.586; NLL 3.92 /
    0.96 / 2.73; RMSE 0.074 / 0.068 / 0.071 (float32, the script's default: 0.557 / 0.714 / 0.637).
    NUTS is far from converged at this budget (split R-hat 8-12), so its coverage is not a reference and only has to
    beat MAP's; AutoNormal must beat it by 0.05.  With 800 MAP and 500 VI steps the AutoNormal fit was still biased
    (RMSE 0.106) and the check failed.
    """
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[2] / "benchmarks" / "baselines_chemical.py"
    spec = importlib.util.spec_from_file_location("baselines_chemical", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    scores = bench.main(["--num-train", "6", "--num-times", "21", "--map-steps", "1500", "--vi-steps", "1000",
                         "--nuts-warmup", "100", "--nuts-samples", "100", "--tree-depth", "4"])
    for method, margin in (("autonormal", 0.05), ("nuts", 0.0)):
        assert scores[method]["coverage_90"] > scores["map"]["coverage_90"] + margin, method
        assert scores[method]["nll"] < scores["map"]["nll"], method
        assert scores[method]["rmse"] < 0.1, method  # noise std 0.02; the small network is biased
