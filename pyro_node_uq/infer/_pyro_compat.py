"""The one place that touches Pyro internals with no public equivalent.

Each item names the Pyro version it was checked against (pyro-ppl 1.9.2).  Everything else in the package uses
Pyro's public API only (``tests/test_architecture.py`` checks that no other module names a private Pyro
attribute).  Subclasses of Pyro's autoguides still *override* the documented extension hook ``_setup_prototype``;
calling it, or reading what it sets up, goes through here.
"""
import functools
from contextlib import contextmanager

from pyro.infer.mcmc.api import (  # 1.9.2: MCMC's per-process and in-process samplers
    _MultiSampler,
    _UnarySampler,
)
from pyro.ops.integrator import (
    _EXCEPTION_HANDLERS,  # 1.9.2: the registry of solver errors HMC treats as divergences
)
from pyro.poutine import runtime
from pyro.poutine.subsample_messenger import (
    _Subsample,  # 1.9.2: the distribution of a plate's subsample site
)

__all__ = ["SUBSAMPLE_DIST", "autoguide_state", "bare_model", "chains_in_process", "guide_model", "hmc_statistics",
           "is_registered_solver_error", "is_unset_autoguide", "isolated_handlers", "mask_of", "pyro_name",
           "replace_model", "setup_prototype", "unconstrained_shapes", "unpack_latent"]

SUBSAMPLE_DIST = _Subsample


@contextmanager
def isolated_handlers():
    """Run Pyro code as if at top level: no enclosing effect handler sees its messages and its plates allocate
    their dims afresh (the enclosing plates keep theirs once the block exits).

    Used by the guides and kernels that evaluate the model's log density inside their own ``forward`` (the
    Langevin exact drift): the caller's plates (vectorised ELBO particles, ``Predictive`` samples) must neither
    wrap nor collide with the model's plates there.  ``poutine.block`` hides messages but not dims, which are
    allocated by one global allocator.  Checked against pyro-ppl 1.9.2 (``runtime._PYRO_STACK`` and
    ``runtime._DIM_ALLOCATOR._stack``).
    """
    stack, dims = runtime._PYRO_STACK[:], runtime._DIM_ALLOCATOR._stack[:]
    del runtime._PYRO_STACK[:]
    del runtime._DIM_ALLOCATOR._stack[:]
    try:
        yield
    finally:
        runtime._PYRO_STACK[:] = stack
        runtime._DIM_ALLOCATOR._stack[:] = dims


def is_registered_solver_error(exc):
    """Whether ``exc`` is a numerical failure that Pyro's HMC would count as a divergence (handlers registered
    with ``pyro.ops.integrator.register_exception_handler``; a private registry in pyro-ppl 1.9.2)."""
    return any(handler(exc) for handler in _EXCEPTION_HANDLERS.values())


def chains_in_process(mcmc, kernel, num_samples, warmup_steps, num_chains, progress_bar, initial_params, hook):
    """Make ``mcmc`` draw its chains one after another in this process (Pyro would fork one process per chain:
    counted model evaluations and hook statistics would stay in the children).  Pyro 1.9.2 has no public switch;
    this swaps its private ``_MultiSampler`` for the ``_UnarySampler``."""
    if isinstance(mcmc.sampler, _MultiSampler):
        mcmc.sampler = _UnarySampler(kernel, num_samples, warmup_steps, num_chains, not progress_bar,
                                     initial_params=initial_params, hook=hook)
    return mcmc


def replace_model(guide, model):
    """Point a fitted autoguide at another model with the same sites (e.g. the bare model instead of the
    evaluation-counting wrapper it was fitted with).  Pyro 1.9.2 keeps an autoguide's model in the private
    ``AutoGuide._model`` slot, a 1-tuple so that ``nn.Module`` does not register it."""
    guide._model = (model,)
    return guide


def bare_model(model):
    """The user's model inside an autoguide's wrappers.  Pyro 1.9.2's ``AutoContinuous`` wraps its model in
    ``InitMessenger(init_loc_fn)(model)``, a ``functools.partial`` of the messenger's context wrapper whose last
    argument is the model."""
    from pyro.poutine.messenger import Messenger

    while isinstance(model, functools.partial) and model.args and isinstance(model.args[0], Messenger):
        model = model.args[-1]
    return model


def autoguide_state(guide, getstate, with_model=False):
    """``getstate()`` (an autoguide's inherited ``__getstate__``) without stripping the live guide of its model:
    Pyro 1.9.2's ``AutoGuide.__getstate__`` sets the private ``_model`` of the guide itself to ``None``.  With
    ``with_model`` the pickled state keeps the model too (it must then be picklable)."""
    model = guide._model
    state = getstate()
    guide._model = model
    if with_model:
        state["_model"] = model
    return state


def guide_model(guide):
    """The model an autoguide was built on, or ``None`` after unpickling (Pyro 1.9.2 keeps it in the private
    ``AutoGuide._model`` 1-tuple and drops it when pickled)."""
    model = guide._model
    return None if model is None else model[0]


def setup_prototype(guide, *args, **kwargs):
    """Trace the model and build an autoguide's parameters without drawing (``AutoGuide._setup_prototype`` in
    Pyro 1.9.2); returns :func:`unconstrained_shapes` of the guide."""
    guide._setup_prototype(*args, **kwargs)
    return unconstrained_shapes(guide)


def is_unset_autoguide(guide):
    """Whether ``guide`` is an autoguide whose model has not been traced yet (no ``prototype_trace``)."""
    return getattr(guide, "prototype_trace", True) is None and hasattr(guide, "_setup_prototype")


def unconstrained_shapes(guide):
    """``site -> unconstrained shape`` of an ``AutoContinuous`` guide's latent in its order (Pyro 1.9.2's private
    ``_unconstrained_shapes``), or ``None`` for a guide not set up or not an ``AutoContinuous``."""
    return getattr(guide, "_unconstrained_shapes", None)


def unpack_latent(guide, latent):
    """``(site, unconstrained value)`` pairs of an ``AutoContinuous`` guide's flat ``latent`` (Pyro 1.9.2's
    ``AutoContinuous._unpack_latent``)."""
    return guide._unpack_latent(latent)


def pyro_name(module):
    """The name under which a ``PyroModule`` (every autoguide) stores its parameters, ``"<name>.param"`` (Pyro
    1.9.2's ``PyroModule._pyro_name``), or ``None``."""
    return getattr(module, "_pyro_name", None)


def pyro_param_event_dim(module, name):
    """The event dim of the ``PyroParam`` ``name`` of the ``PyroModule`` ``module`` (``PyroModule._pyro_params`` in
    Pyro 1.9.2)."""
    return module._pyro_params[name][1]


def hmc_statistics(kernel):
    """``(mean acceptance probability, divergent draw indices, last potential energy or None)`` of Pyro's HMC or
    NUTS kernel during a run (its private running statistics in Pyro 1.9.2)."""
    return kernel._mean_accept_prob, kernel._divergences, kernel._potential_energy_last


def mask_of(fn):
    """The mask of a ``MaskedDistribution`` (private ``_mask`` in Pyro 1.9.2: a bool tensor or a bool)."""
    return fn._mask
