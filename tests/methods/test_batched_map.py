"""MAP fits batched in one model: each fit ends as it would alone (values, losses, stopping step)."""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_map
from pyro_node_uq.methods.batched_map import batchable, fit_batched_map, has_own_params
from pyro_node_uq.methods.common import init_loc, map_values
from pyro_node_uq.methods.convergence import StoppingRule


@pytest.fixture(scope="module")
def tiny():
    return load_problem("chemical", num_train=3, num_times=11)


def _alone(model, split, seed, **options):
    """run_map's SVI fit alone (no L-BFGS polish: fit_batched_map is the SVI stage of a batched fit)."""
    return run_map(model, split, seed=seed, num_starts=1, progress_bar=False, record_errors=False, polish_iters=0,
                   **options)


def test_each_batched_fit_equals_its_fit_alone_with_clipping_active(tiny):
    """float64, three fits for 8 steps with a clip that binds: ClippedAdam clips elementwise, so the batched fits'
    values and losses equal three separate fits'."""
    model = tiny.default_model(R_hidden=(4,))
    options = {"num_steps": 8, "lr": 0.05, "lr_final": 0.01, "clip_norm": 0.05}
    fit = fit_batched_map(model, tiny.train, [init_loc(model, s) for s in (3, 4, 5)], progress_bar=False,
                          **options)
    for k, seed in enumerate((3, 4, 5)):
        alone = _alone(model, tiny.train, seed, stop_rtol=0.0, **options)
        torch.testing.assert_close(torch.tensor(fit.losses[k]), torch.tensor(alone.losses), rtol=1e-10, atol=1e-8)
        for name, value in map_values(alone).items():
            torch.testing.assert_close(fit.values[k][name], value, rtol=1e-10, atol=1e-10)
        assert fit.endings[k].converged is None and fit.endings[k].steps == 8
    assert fit.num_model_evals >= 3 * 8


def test_every_fit_stops_by_its_own_rule_and_keeps_the_values_of_that_step(tiny):
    """With a loose tolerance the two fits converge at different steps (float64): the early one stops where it would
    alone (same step, losses and values), the later one where the rule applied to its own losses says, and the
    batch ends with the later one.  (Over hundreds of steps the batched and the lone fit drift apart by rounding,
    as any two summation orders do, so only the early stop is compared with a lone fit.)"""
    model = tiny.default_model(R_hidden=(4,))
    options = {"num_steps": 400, "lr": 0.02, "lr_final": 2e-4, "stop_rtol": 1e-2, "stop_window": 10,
               "stop_patience": 1}
    seeds = (1, 4)
    fit = fit_batched_map(model, tiny.train, [init_loc(model, s) for s in seeds], progress_bar=False, **options)
    steps = [e.steps for e in fit.endings]
    assert all(e.converged for e in fit.endings) and steps[0] < 100 < steps[1] < 400, steps
    alone = _alone(model, tiny.train, seeds[0], **options)
    assert alone.steps_used == steps[0] and len(fit.losses[0]) == steps[0]
    torch.testing.assert_close(torch.tensor(fit.losses[0]), torch.tensor(alone.losses), rtol=1e-10, atol=1e-8)
    for name, value in map_values(alone).items():
        torch.testing.assert_close(fit.values[0][name], value, rtol=1e-9, atol=1e-9)
    rule = StoppingRule(400, 1e-2, 10, patience=1)
    assert next(i for i, v in enumerate(fit.losses[1]) if rule(i, v)) + 1 == steps[1] == len(fit.losses[1])
    # the batch stopped with its last fit (+ the guide's setup trace and the final log joints)
    assert 2 * steps[1] <= fit.num_model_evals <= 2 * steps[1] + 4


def test_log_joints_are_each_fits_own(tiny):
    from pyro import poutine

    model = tiny.default_model(R_hidden=(4,))
    fit = fit_batched_map(model, tiny.train, [init_loc(model, s) for s in (0, 1)], num_steps=3, lr=0.01,
                          progress_bar=False)
    for k in range(2):
        trace = poutine.trace(poutine.condition(model, fit.values[k])).get_trace(*tiny.train.args,
                                                                                 **tiny.train.kwargs)
        assert float(fit.log_joints[k]) == pytest.approx(float(trace.log_prob_sum()), rel=1e-10)


def test_own_params_are_detected_and_batched_where_the_model_accepts_them(tiny):
    learned = tiny.default_model(scale="learned")
    assert has_own_params(learned, tiny.train) and batchable(learned, tiny.train)
    assert not has_own_params(tiny.default_model(), tiny.train) and batchable(tiny.default_model(), tiny.train)
    learned.batchable_params = ()
    assert not batchable(learned, tiny.train)


def test_a_hierarchical_model_with_a_learned_noise_scale_batches_its_fits():
    """Per-unit effects inside the data plate and a learned noise scale, one per fit: each fit's log joint is that of
    the unbatched model at the fit's values and scale (float64); a learned omega, which the model cannot take
    batched, is refused.  (Its random effects start at prior draws, which a batch draws differently from a fit
    alone, so the fits are not compared with lone fits here.)"""
    from pyro import poutine

    from pyro_node_uq.models import HierarchicalNODEModel
    from pyro_node_uq.utils.seeding import param_scope

    problem = load_problem("pk_repeated", num_units=6, noise=0.05)
    split = problem.train
    model = HierarchicalNODEModel(hidden_dim=1, R_hidden=(3,), Z_hidden=None, omega="latent", scale="learned",
                                  solver={"method": "rk4"})
    assert batchable(model, split)
    fit = fit_batched_map(model, split, [init_loc(model, s) for s in (0, 1)], num_steps=5, lr=0.02,
                          progress_bar=False)
    args, kwargs = model.fit_args(split)
    for k in range(2):
        with param_scope(fit.param_state(k)), torch.no_grad():
            trace = poutine.trace(poutine.condition(model, fit.values[k])).get_trace(*args, **kwargs)
            assert float(fit.log_joints[k]) == pytest.approx(float(trace.log_prob_sum()), rel=1e-10)
    learned_omega = HierarchicalNODEModel(hidden_dim=1, R_hidden=(3,), Z_hidden=None, omega="learned",
                                          scale="learned", solver={"method": "rk4"})
    assert not batchable(learned_omega, split)
