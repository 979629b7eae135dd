"""The Pyro internals the package relies on, one test each: a Pyro release that moves one of them fails here,
by name, before anything built on it misbehaves."""
import pickle
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoDiagonalNormal, AutoNormal

from pyro_node_uq.infer import _pyro_compat as compat


def model():
    pyro.sample("a", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("b", dist.LogNormal(0.0, 1.0))


def test_isolated_handlers_hide_the_callers_handlers_and_plate_dims():
    with poutine.trace() as outer, pyro.plate("particles", 3, dim=-1):
        with compat.isolated_handlers(), pyro.plate("data", 4, dim=-1):  # the caller's dim -1 is free in here
            x = pyro.sample("x", dist.Normal(0.0, 1.0))
        y = pyro.sample("y", dist.Normal(0.0, 1.0))
    assert x.shape == (4,) and y.shape == (3,)  # the caller's plate did not wrap x, and holds its dim afterwards
    assert "x" not in outer.trace.nodes and "y" in outer.trace.nodes


def test_isolated_handlers_restore_the_stack_after_an_error():
    with poutine.trace() as outer:
        with pytest.raises(RuntimeError, match="inside"), compat.isolated_handlers():
            raise RuntimeError("inside")
        pyro.sample("z", dist.Normal(0.0, 1.0))
    assert "z" in outer.trace.nodes


def test_solver_errors_registered_with_pyro_are_recognised():
    from pyro_node_uq.distributions import NODEDivergenceError

    assert compat.is_registered_solver_error(NODEDivergenceError("diverged"))
    assert not compat.is_registered_solver_error(KeyError("a"))


def test_a_multi_process_sampler_is_swapped_for_the_in_process_one():
    from pyro.infer.mcmc.api import _MultiSampler, _UnarySampler

    kernel = pyro.infer.NUTS(model)
    mcmc = SimpleNamespace(sampler=_MultiSampler.__new__(_MultiSampler))
    assert compat.chains_in_process(mcmc, kernel, 5, 2, 2, False, None, None) is mcmc
    assert isinstance(mcmc.sampler, _UnarySampler) and mcmc.sampler.num_chains == 2 and mcmc.sampler.kernel is kernel
    unary = mcmc.sampler
    assert compat.chains_in_process(mcmc, kernel, 5, 2, 2, False, None, None).sampler is unary  # left alone


def test_the_model_of_an_autoguide_read_replaced_and_unwrapped():
    guide = AutoDiagonalNormal(model)
    assert compat.bare_model(guide.model) is model  # autoguides wrap it in their init messenger
    assert compat.bare_model(compat.guide_model(AutoNormal(model))) is model and compat.bare_model(model) is model

    def other():
        model()

    assert compat.guide_model(compat.replace_model(AutoNormal(model), other)) is other


def test_autoguide_state_keeps_the_live_guides_model():
    guide = AutoNormal(model)
    guide()
    state = compat.autoguide_state(guide, guide.__getstate__)
    assert state["_model"] is None and compat.bare_model(compat.guide_model(guide)) is model
    with_model = compat.autoguide_state(guide, guide.__getstate__, with_model=True)
    assert compat.bare_model(with_model["_model"][0]) is model
    assert compat.guide_model(pickle.loads(pickle.dumps(guide))) is None


def test_prototype_shapes_and_latent_unpacking():
    guide = AutoDiagonalNormal(model)
    assert compat.is_unset_autoguide(guide) and compat.unconstrained_shapes(guide) is None
    shapes = compat.setup_prototype(guide)
    assert {k: tuple(v) for k, v in shapes.items()} == {"a": (2,), "b": ()} and not compat.is_unset_autoguide(guide)
    pairs = [(site["name"] if isinstance(site, dict) else site, v) for site, v in
             compat.unpack_latent(guide, torch.arange(3.0))]
    assert [p[0] for p in pairs] == ["a", "b"]
    assert torch.equal(pairs[0][1], torch.tensor([0.0, 1.0])) and torch.equal(pairs[1][1], torch.tensor(2.0))
    assert not compat.is_unset_autoguide(model) and compat.unconstrained_shapes(AutoNormal(model)) is None


def test_pyro_name_of_a_module():
    guide = AutoNormal(model)
    guide()
    assert compat.pyro_name(guide) == "AutoNormal"
    assert all(name.startswith("AutoNormal.") for name in pyro.get_param_store())
    assert compat.pyro_name(torch.nn.Linear(1, 1)) is None


def test_hmc_statistics_of_a_short_run():
    kernel = pyro.infer.HMC(lambda: pyro.sample("x", dist.Normal(0.0, 1.0)), step_size=0.5, num_steps=2,
                            adapt_step_size=False)
    pyro.infer.MCMC(kernel, num_samples=5, warmup_steps=2, disable_progbar=True).run()
    accept, divergences, energy = compat.hmc_statistics(kernel)
    assert 0.0 <= float(accept) <= 1.0 and isinstance(divergences, list) and divergences == []
    assert energy is None or torch.isfinite(torch.as_tensor(energy))


def test_the_mask_of_a_masked_distribution_and_the_subsample_distribution():
    mask = torch.tensor([True, False])
    assert compat.mask_of(dist.Normal(torch.zeros(2), 1.0).mask(mask)) is mask
    assert compat.mask_of(dist.Normal(0.0, 1.0).mask(False)) is False

    def subsampled():
        with pyro.plate("data", 10, subsample_size=3):
            pass

    tr = poutine.trace(subsampled).get_trace()
    assert isinstance(tr.nodes["data"]["fn"], compat.SUBSAMPLE_DIST)
