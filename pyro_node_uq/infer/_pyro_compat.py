"""The one place that touches Pyro internals with no public equivalent.

Each item names the Pyro version it was checked against (pyro-ppl 1.9.2).  Everything else in the package uses
Pyro's public API only.
"""
from contextlib import contextmanager

from pyro.ops.integrator import _EXCEPTION_HANDLERS  # 1.9.2: the registry of solver errors HMC treats as divergences
from pyro.poutine import runtime
from pyro.poutine.subsample_messenger import _Subsample  # 1.9.2: the distribution of a plate's subsample site

__all__ = ["SUBSAMPLE_DIST", "is_registered_solver_error", "isolated_handlers", "subsample_indices"]

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


def subsample_indices(plates):
    """``{plate name: indices}`` of the subsampled plates among ``plates`` (name -> ``pyro.plate``): the values
    that condition a model's subsample sites on the indices the guide drew.  Pyro 1.9.2 keeps a plate's indices
    in the private ``_indices``."""
    return {name: p._indices for name, p in plates.items()
            if p.subsample_size is not None and p.subsample_size != p.size}
