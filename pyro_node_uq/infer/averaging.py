"""Tail averaging of an optimiser's iterates (Polyak-Ruppert averaging): the uniform mean of the parameters over the
last part of a fit, one point in parameter space.  Late iterates of a stochastic or oscillating optimisation scatter
around a basin's floor; their mean lies nearer the floor than any one of them, and depends less on where the
optimiser happened to be at its last step."""
import math

import pyro
import torch

from ..validation import check_int

__all__ = ["TailAverage"]


class TailAverage:
    """The uniform mean of every parameter in Pyro's param store over the last ``fraction`` of the steps recorded.

    Call :meth:`update` after every optimisation step and :meth:`load` at the end: it writes the mean of the last
    ``ceil(fraction * steps)`` iterates (rounded up to whole blocks of ``block`` steps) into the store.  The number
    of steps need not be known in advance (a fit may stop early), so the mean is kept as sums over blocks of
    ``block`` steps.  Parameters are averaged in the store's unconstrained space, where the optimiser moves them;
    a parameter that appears part way through is averaged over the steps it exists for.

    :param float fraction: the share of the recorded steps to average over, in ``(0, 1]``.
    :param int block: steps per stored block sum (memory: ``steps / block`` copies of the parameters).

    Example::

        >>> import pyro, torch
        >>> pyro.clear_param_store()
        >>> p = pyro.param("w", torch.zeros(()))
        >>> avg = TailAverage(0.5, block=1)
        >>> for step in range(4):
        ...     with torch.no_grad():
        ...         _ = p.fill_(float(step))
        ...     avg.update()
        >>> avg.load(); float(pyro.param("w"))
        2.5
    """

    def __init__(self, fraction, block=25):
        self.fraction = float(fraction)
        if not 0 < self.fraction <= 1:
            raise ValueError(f"average_tail must be in (0, 1], got {fraction!r}")
        self.block = check_int(block, "block", 1)
        self.blocks = []  # [(sums by name, counts by name, steps)]
        self.steps = 0

    def update(self):
        """Add the store's current parameters to the running block."""
        if not self.blocks or self.blocks[-1][2] == self.block:
            self.blocks.append(({}, {}, 0))
        sums, counts, n = self.blocks[-1]
        with torch.no_grad():
            for name, p in pyro.get_param_store().named_parameters():
                sums[name] = sums[name] + p.detach() if name in sums else p.detach().clone()
                counts[name] = counts.get(name, 0) + 1
        self.blocks[-1] = (sums, counts, n + 1)
        self.steps += 1

    def mean(self):
        """The mean unconstrained value ``name -> tensor`` over the last ``fraction`` of the steps (``{}`` before
        the first :meth:`update`)."""
        want = math.ceil(self.fraction * self.steps)
        total, count, covered = {}, {}, 0
        for sums, counts, n in reversed(self.blocks):
            if covered >= want:
                break
            for name, s in sums.items():
                total[name] = total[name] + s if name in total else s.clone()
                count[name] = count.get(name, 0) + counts[name]
            covered += n
        return {name: s / count[name] for name, s in total.items()}

    def load(self):
        """Write :meth:`mean` into the param store."""
        params = dict(pyro.get_param_store().named_parameters())
        with torch.no_grad():
            for name, value in self.mean().items():
                if name in params:
                    params[name].copy_(value)
