"""Every registered method on a hierarchical NODE (random effects inside the units' plate): fit, per-unit draws,
predictions for new units and for known units' later observations, InferenceData with a unit dim."""
import math

import pytest
import torch

from pyro_node_uq.compare import RunContext
from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.methods import (
    METHODS,
    MethodSkipped,
    map_values,
    run_layerwise,
    run_layerwise_effects,
    run_map,
)
from pyro_node_uq.utils.seeding import param_scope
from tests.methods.test_contract import tiny_options


@pytest.fixture(scope="module")
def ctx():
    problem = load_problem("pk_repeated", num_units=6, num_obs=5)
    context = RunContext(problem, progress_bar=False, options={name: tiny_options(m) for name, m in METHODS.items()})
    # rk4 on the observation intervals keeps the tiny fits fast; NUTS then visits fields far above their stable step,
    # which the step check would report on every solve: these tests check plumbing, not accuracy
    context._model = problem.default_model(R_hidden=(4,), solver={"method": "rk4", "step_check": False})
    return context


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_handles_random_effects(ctx, name):
    try:
        result = ctx.fit(name)
    except MethodSkipped as e:  # methods of static (x, y) models
        pytest.skip(f"{name} does not apply to a NODE model: {e}")
    n_train = len(ctx.problem.train)
    if METHODS[name].kind == "error":
        assert result.error_predictor is not None
        return
    draws = result.posterior_samples(4)
    assert draws["eta_z"].shape == (4, n_train, 2) and bool(torch.isfinite(draws["eta_z"]).all())
    for split in (ctx.problem.test, ctx.problem.extrapolation):  # new units; known units' later samples
        pred = result.predict(split, num_samples=4)
        assert pred["y_mean"].shape == (4, len(split), len(split.t), 1) and bool(torch.isfinite(pred["y_mean"]).all())
    idata = to_inference_data(result, ctx.problem.extrapolation, num_samples=4, num_chains=2)
    assert idata.posterior["eta_z"].dims[2] == "trajectory"
    assert math.isfinite(float(idata.log_likelihood["obs"].sum()))


def test_layerwise_random_effects_stochastic_network_point_estimated(ctx):
    model, train = ctx.model, ctx.problem.train
    start = run_map(model, train, num_steps=3, progress_bar=False)
    fit = run_layerwise(model, train, warm_start=start, stochastic=["eta_z"], num_steps=3, progress_bar=False,
                        elbo_particles=2)
    assert fit.stochastic_dim == 2 * len(train)  # only eta_z is random
    draws = fit.posterior_samples(5)
    assert draws["eta_z"].std(0).min() > 0 and draws["R.0.weight"].std(0).max() == 0


def test_layerwise_effects_block_is_jointly_gaussian_and_starts_at_the_map_effects(ctx):
    """``layerwise_effects`` on a centred model from a non-centred MAP: the block (every ``eta`` and a latent
    omega) is one full-covariance Gaussian, the network a point estimate, and the centred ``eta`` starts at MAP's
    ``eta = omega * eta_z`` (carried over as a deterministic site), not at 0."""
    problem, train = ctx.problem, ctx.problem.train
    start = run_map(problem.default_model(R_hidden=(4,), omega="latent"), train, num_steps=20, progress_bar=False)
    values = map_values(start, derived=True)
    assert torch.allclose(values["eta"], values["omega"] * values["eta_z"])
    centred = problem.default_model(R_hidden=(4,), omega="latent", parameterization="centred")
    fit = run_layerwise_effects(centred, train, warm_start=start, num_steps=1, lr=1e-9, progress_bar=False,
                                elbo_particles=0)
    assert fit.name == "layerwise_effects" and fit.stochastic_dim == 2 * len(train) + 2
    assert fit.guide.stochastic_sites == ["omega", "eta"]
    with param_scope(fit.param_state):
        median = fit.guide.median(*train.args, **train.kwargs)
        scale_tril = fit.guide[1].scale_tril
    assert torch.allclose(median["eta"], values["eta"], atol=1e-6), (median["eta"], values["eta"])
    assert scale_tril.shape == (2 * len(train) + 2,) * 2
    draws = fit.posterior_samples(6)
    assert draws["eta"].std(0).min() > 0 and draws["R.0.weight"].std(0).max() == 0


def test_layerwise_effects_skips_a_model_without_effects(ctx):
    with pytest.raises(MethodSkipped, match="no random effects"):
        run_layerwise_effects(ctx.problem.default_model(effects=(), R_hidden=(4,)), ctx.problem.train, num_steps=1,
                              map_steps=1, progress_bar=False)
