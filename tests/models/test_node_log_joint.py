"""The NODE model's own log joint: equal to the log density of Pyro's trace of the model (float64, 1e-12) with a
learned noise scale, a given initial state, masks, Student-t noise and other error models; as a NUTS potential equal to Pyro's potential
energy and its gradient; declined (None, Pyro's potential kept) for what it does not cover."""
import functools

import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC
from pyro.ops.integrator import potential_grad

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import LogJointNUTS
from pyro_node_uq.models import NODEModel
from pyro_node_uq.models.node_log_joint import node_log_joint


@functools.lru_cache(maxsize=1)
def _chemical():
    return load_problem("chemical", num_train=3, dtype=torch.float64)


def _problem(**model_kw):
    problem = _chemical()
    return problem.default_model(R_hidden=(6,), **model_kw), problem.train


def _values(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {k: 0.3 * torch.randn(s, generator=gen, dtype=torch.float64) for k, s in model.weight_shapes().items()}


@pytest.mark.parametrize("kw", [{}, {"scale": "learned"}, {"error_model": "combined", "prop_scale": 0.1}, {"init": torch.ones(3) * 0.5},
                                {"noise": "studentt"}, {"error_model": "proportional", "scale": 0.1}])
def test_equals_the_trace_log_density(kw):
    if "init" in kw:
        kw = {**kw, "init": kw["init"].double()}
    model, data = _problem(**kw)
    args, kwargs = data.args, dict(data.kwargs)
    mask = torch.rand(data.y.shape[:2], generator=torch.Generator().manual_seed(2)) > 0.2
    kwargs["mask"] = mask
    log_joint = node_log_joint(model, *args, **kwargs)
    assert log_joint is not None and log_joint.sites == list(model.weight_shapes())
    for seed in range(3):
        values = {k: v.requires_grad_() for k, v in _values(model, seed).items()}
        want = poutine.trace(poutine.condition(model, values)).get_trace(*args, **kwargs).log_prob_sum()
        got = log_joint(values)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        for a, b in zip(torch.autograd.grad(got, list(values.values())),
                        torch.autograd.grad(want, list(values.values()))):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_declines_what_it_does_not_cover():
    model, data = _problem(scale="latent")
    assert model.log_joint_fn(*data.args) is None
    model, data = _problem()
    assert model.log_joint_fn(data.t, data.x, None) is None  # no observations

    class Custom(NODEModel):
        def unit_mean(self, mean, effects, population, units):
            return 2 * mean

    custom = Custom(obs_dim=2, input_dim=1, hidden_dim=3, R_hidden=(4,), Z_hidden=None, scale=0.1)
    assert custom.log_joint_fn(*data.args) is None


def test_nuts_potential_equals_pyros():
    model, data = _problem()
    ours = LogJointNUTS(model, init_strategy=model.init_loc_fn(0), max_plate_nesting=1)
    pyros = LogJointNUTS(model, init_strategy=model.init_loc_fn(0), max_plate_nesting=1, model_log_joint=False)
    for kernel in (ours, pyros):
        kernel.setup(0, *data.args)
    assert ours.uses_model_log_joint and not pyros.uses_model_log_joint
    for seed in range(3):
        z = {k: v + 0.1 * torch.randn(v.shape, generator=torch.Generator().manual_seed(seed), dtype=v.dtype)
             for k, v in ours.initial_params.items()}
        (g1, u1), (g2, u2) = potential_grad(ours.potential_fn, z), potential_grad(pyros.potential_fn, z)
        torch.testing.assert_close(u1, u2, rtol=1e-12, atol=0)
        for k in z:
            torch.testing.assert_close(g1[k], g2[k], rtol=1e-10, atol=1e-12)


def test_latent_scale_keeps_pyros_potential_and_runs():
    model, data = _problem(scale="latent")
    kernel = LogJointNUTS(model, max_tree_depth=2, init_strategy=model.init_loc_fn(0), max_plate_nesting=1)
    mcmc = MCMC(kernel, num_samples=2, warmup_steps=2, disable_progbar=True)
    mcmc.run(*data.args)
    assert not kernel.uses_model_log_joint and mcmc.get_samples()["sigma"].shape == (2, 2)
