"""The method contract, run once over every registered method on a tiny problem (a method added to the registry is
tested here without a line of its own): a MethodResult named after the method, counted cost that includes the
warm start, posterior draws of every latent site, predictions with the model's predict sites, and an ArviZ
InferenceData whose log-likelihood group holds every observed entry."""
import math

import pytest
import torch

from pyro_node_uq.compare import RunContext
from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.methods import METHODS, MethodResult, MethodSkipped

SHRINK = {"num_particles": 4, "elbo_particles": 4, "num_members": 2, "num_chains": 2}


def tiny_options(method):
    """The method's quick options with every loop count cut to 3 and particle counts to a few."""
    opts = method.options("chemical", quick=True)
    for key, value in opts.items():
        if key in method.scaled and isinstance(value, int):
            opts[key] = min(value, 3)
        elif key in SHRINK and isinstance(value, int):
            opts[key] = min(value, SHRINK[key])
    if "thin" in opts:
        opts["thin"] = 1
    return opts


@pytest.fixture(scope="module")
def ctx():
    problem = load_problem("chemical", num_train=2, num_test=2, num_extrapolation=2, num_times=11)
    context = RunContext(problem, progress_bar=False,
                         options={name: tiny_options(m) for name, m in METHODS.items()})
    context._model = problem.default_model(R_hidden=(4,))  # 35 weights: NUTS and the kernels stay cheap
    return context


@pytest.mark.parametrize("name", list(METHODS))
def test_method_contract(ctx, name):
    method = METHODS[name]
    try:
        result = ctx.fit(name)
    except MethodSkipped as e:  # a method of static (x, y) models: tests/methods/test_static_contract.py runs it;
        # one of hierarchical models: tests/models/test_hierarchical_methods.py does
        assert "brings no guide of its own" in str(e) or "has no random effects" in str(e), e
        pytest.skip(f"{name} does not apply to a NODE model: {e}")
    assert isinstance(result, MethodResult) and result.name.startswith(name)
    assert type(result.model) is type(ctx.model)  # the model itself, or a copy with another divergence mode
    assert result.model.weight_shapes() == ctx.model.weight_shapes()
    assert result.wall_time > 0 and result.num_model_evals > 0 and result.stochastic_dim >= 0
    if method.start:
        start = ctx.fit(method.start)
        assert result.num_model_evals >= start.num_model_evals and result.wall_time >= start.wall_time
    draws = result.posterior_samples(4)
    weights = ctx.model.weight_shapes()
    assert set(weights) <= set(draws)
    for site, shape in weights.items():
        assert draws[site].shape == (4,) + shape and bool(torch.isfinite(draws[site]).all()), site
    test = ctx.problem.test
    if method.kind == "error":
        assert result.error_predictor is not None
        return
    pred = result.predict(test, num_samples=4)
    assert set(pred) == set(ctx.model.predict_sites)
    N, T = test.y.shape[:2]
    assert pred["obs"].shape == (4, N, T, ctx.problem.obs_dim) and bool(torch.isfinite(pred["y_mean"]).all())
    idata = to_inference_data(result, test, num_samples=4, num_chains=2)
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert math.isfinite(float(idata.log_likelihood["obs"].sum()))


def test_log_likelihood_holds_every_observed_entry(ctx):
    idata = to_inference_data(ctx.fit("autonormal"), ctx.problem.test, num_samples=4, num_chains=2)
    N, T = ctx.problem.test.y.shape[:2]
    ll = idata.log_likelihood["obs"].isel(chain=0, draw=0)
    assert ll.size == idata.observed_data["obs"].size == N * T * ctx.problem.obs_dim
