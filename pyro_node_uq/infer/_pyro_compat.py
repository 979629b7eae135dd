"""The one place that touches Pyro internals with no public equivalent.

Each item names the Pyro version it was checked against (pyro-ppl 1.9.2).  Everything else in the package uses
Pyro's public API only.
"""
import functools
from contextlib import contextmanager

from pyro.infer.mcmc.api import _MultiSampler, _UnarySampler  # 1.9.2: MCMC's per-process and in-process samplers
from pyro.ops.integrator import _EXCEPTION_HANDLERS  # 1.9.2: the registry of solver errors HMC treats as divergences
from pyro.poutine import runtime
from pyro.poutine.subsample_messenger import _Subsample  # 1.9.2: the distribution of a plate's subsample site

__all__ = ["SUBSAMPLE_DIST", "chains_in_process", "is_registered_solver_error", "isolated_handlers", "replace_model"]

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
