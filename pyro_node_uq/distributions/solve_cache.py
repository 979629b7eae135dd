"""The one cache of the fixed-step solve, with its own limits: memoised grids, compiled step chunks, scripted loops.

Everything the solve keeps between calls lives in one :class:`SolveCache` object, :data:`CACHE`, so that what is
held, for how long and how much of it is stated in one place (and a test can swap in a fresh one):

* **grids**: the stage times, step widths and stage inputs of a solve, per data (see
  :func:`~pyro_node_uq.distributions.fixed_grid.solve_node_fixed`): the last ``grid_entries`` are held, each only
  when its stage inputs have at most ``grid_max_elements`` elements (larger data are cheap to recompute beside the
  solve and expensive to hold);
* **compiled**: ``torch.compile`` d step chunks per (method, shapes, dtype, device), at most ``compiled_entries``
  (the oldest dropped first); with the ``"auto"`` policy a shape is compiled once it has been solved
  ``compile_after`` times;
* **scripted**: the TorchScript versions of the hand-written solve's step loops, made at a loop's
  ``script_after``-th use (one per loop function: bounded by the code);
* **checked**: the data tensors (times, inputs, initial states) that passed the solve's argument checks, the last
  ``checked_entries`` of them, so that a model evaluated thousands of times on the same data checks them once.
"""
from collections import OrderedDict

import torch

__all__ = ["CACHE", "SolveCache", "check_sample_once"]


class SolveCache:
    """Bounded caches of the fixed-step solve (see the module docstring).

    :param int grid_entries: memoised grids held.
    :param int grid_max_elements: largest stage-input tensor memoised.
    :param int compile_after: solves of a shape before ``compile="auto"`` compiles it.
    :param int compiled_entries: compiled chunk functions held (and shapes counted: four times as many).
    :param int script_after: uses of a step loop before it is scripted.
    :param int checked_entries: data tensors remembered as checked.

    Example::

        >>> cache = SolveCache(grid_entries=1)
        >>> cache.grid("a", lambda: (1, None)), cache.grid("b", lambda: (2, None)), list(cache.grids)
        ((1, None), (2, None), ['b'])
    """

    def __init__(self, grid_entries=8, grid_max_elements=2 ** 22, compile_after=20, compiled_entries=64,
                 script_after=3, checked_entries=16):
        self.grid_entries, self.grid_max_elements, self.checked_entries = grid_entries, grid_max_elements, checked_entries
        self.compile_after, self.compiled_entries, self.script_after = compile_after, compiled_entries, script_after
        self.clear()

    def clear(self):
        """Drop everything held."""
        self.grids, self.compiled, self.counts = OrderedDict(), OrderedDict(), OrderedDict()
        self.scripted, self.uses, self.checked = {}, {}, OrderedDict()

    def grid(self, key, compute):
        """The memoised value of ``key``, else ``compute()``: a tuple whose last item is the stage inputs (a tensor
        or ``None``), held when those are within ``grid_max_elements``."""
        hit = self.grids.get(key)
        if hit is None:
            hit = compute()
            if hit[-1] is None or hit[-1].numel() <= self.grid_max_elements:
                self.grids[key] = hit
                while len(self.grids) > self.grid_entries:
                    self.grids.popitem(last=False)
        return hit

    def check_once(self, value, name, check):
        """``check(value)`` (which raises on bad data), skipped when this very tensor, with the same memory, layout
        and version, passed it under ``name`` before.  The entry holds the tensor, so its memory cannot be reused
        by other data while remembered.  Tensors that need a gradient, inference tensors (no version counter),
        tensors above ``grid_max_elements`` (not held) and traced calls are always checked.

        Example::

            >>> cache, seen = SolveCache(), []
            >>> t = torch.zeros(3)
            >>> for _ in range(2):
            ...     cache.check_once(t, "t", seen.append)
            >>> len(seen)
            1
        """
        if (value.requires_grad or value.is_inference() or value.numel() > self.grid_max_elements
                or torch.jit.is_tracing()):
            check(value)
            return
        key = (name, value.data_ptr(), value.shape, value.stride(), value.dtype, value.device, value._version)
        if key in self.checked:
            self.checked.move_to_end(key)
            return
        check(value)
        self.checked[key] = value
        while len(self.checked) > self.checked_entries:
            self.checked.popitem(last=False)

    def runner(self, key, policy, eager, compile):
        """The chunk function for ``key`` under the compile ``policy`` (``False``, ``True`` or ``"auto"``): the
        compiled one (``compile(eager)``, made once and held), or ``eager`` while ``"auto"`` waits."""
        if policy is False or policy is None:
            return eager
        if key in self.compiled:
            return self.compiled[key]
        self.counts[key] = self.counts.pop(key, 0) + 1
        while len(self.counts) > 4 * self.compiled_entries:
            self.counts.popitem(last=False)
        if policy is True or self.counts[key] >= self.compile_after:
            self.hold_compiled(key, compile(eager))
            return self.compiled[key]
        return eager

    def hold_compiled(self, key, fn):
        """Hold ``fn`` as the chunk function of ``key`` (also: the eager one after a failed compile)."""
        self.compiled[key] = fn
        while len(self.compiled) > self.compiled_entries:
            self.compiled.popitem(last=False)

    def script(self, fn, make):
        """``fn``'s scripted version ``make(fn)``, made at its ``script_after``-th use and held; ``fn`` before."""
        got = self.scripted.get(fn)
        if got is None:
            self.uses[fn] = self.uses.get(fn, 0) + 1
            if self.uses[fn] < self.script_after:
                return fn
            got = self.scripted[fn] = make(fn)
        return got


#: the cache every solve uses
CACHE = SolveCache()


def check_sample_once(dist, value, validate):
    """``validate(value)``, a distribution's sample check (shape and support), skipped when this very ``value``
    passed it for a distribution of the same type and shapes before (:meth:`SolveCache.check_once` of
    :data:`CACHE`): a model scores the same observations at every evaluation."""
    CACHE.check_once(value, ("value", type(dist), dist.batch_shape, dist.event_shape), validate)
