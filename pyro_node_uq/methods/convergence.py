"""When a fit has converged: a stopping rule on the smoothed training loss, what it found, and the warning a fit
gives when its step budget ran out first."""
import math
import warnings
from dataclasses import dataclass

import torch

from ..validation import check_int

__all__ = ["BudgetExhaustedWarning", "Convergence", "NoiseRunawayWarning", "StoppingRule", "loss_slope",
           "noise_growth"]


class BudgetExhaustedWarning(UserWarning):
    """A fit used its whole step budget before its loss stopped improving: its result reflects the budget, not the
    method (raise ``num_steps``, or read the result as unfinished)."""


class NoiseRunawayWarning(UserWarning):
    """A fit's learned observation noise scale grew far above the one of the fit it started from: the method
    explains the data as noise (its predictive bands widen to match), which usually means its optimisation left
    the warm start's good fit rather than that the data are noisier."""


#: growth of a learned noise scale over its warm start's above which :func:`noise_growth` warns
NOISE_GROWTH = 4.0


def noise_growth(name, model, start_state, state, limit=NOISE_GROWTH):
    """The largest factor by which ``model``'s learned noise scale (``model.noise_scale(param_state)``) grew from
    ``start_state`` to ``state``, with a :class:`NoiseRunawayWarning` above ``limit``; ``None`` when the model has
    no learned scale or there is no start.

    Example::

        >>> import torch
        >>> class M:
        ...     def noise_scale(self, state):
        ...         return state["sigma"]
        >>> float(noise_growth("fit", M(), {"sigma": torch.tensor([0.5])}, {"sigma": torch.tensor([1.0])}))
        2.0
    """
    if start_state is None or state is None or not hasattr(model, "noise_scale"):
        return None
    before, after = model.noise_scale(start_state), model.noise_scale(state)
    if not (torch.is_tensor(before) and torch.is_tensor(after)):
        return None  # a fixed scale, or none known
    growth = float((after / before).max())
    if growth > limit:
        warnings.warn(f"{name}: the learned noise scale grew {growth:.3g}-fold over its warm start's "
                      f"({before.tolist()} -> {after.tolist()}); its bands reflect the noise, not the fit",
                      NoiseRunawayWarning, stacklevel=3)
    return growth


@dataclass
class Convergence:
    """How a fit ended.

    :ivar bool converged: the stopping rule fired (``None``: no rule was applied).
    :ivar str reason: why the fit ended, in words.
    :ivar int steps: steps run.
    :ivar float slope: least-squares slope of the loss over the last window, per step (negative: still falling).
    """

    converged: bool
    reason: str
    steps: int
    slope: float


def loss_slope(losses, window):
    """Least-squares slope per step of the last ``window`` values of ``losses`` (``nan`` for fewer than 2).

    Example::

        >>> loss_slope([5.0, 4.0, 3.0, 2.0], window=3)
        -1.0
    """
    tail = [float(v) for v in losses[-int(window):]]
    n = len(tail)
    if n < 2:
        return math.nan
    mx, my = (n - 1) / 2, sum(tail) / n
    return sum((i - mx) * (v - my) for i, v in enumerate(tail)) / sum((i - mx) ** 2 for i in range(n))


class StoppingRule:
    """Stop a fit when its window-averaged loss no longer changes: every ``window`` steps (from ``2 * window`` on)
    the mean loss of the last window is compared with the mean of the window before it, and the fit stops when the
    change is below ``rtol`` times the loss's magnitude (``max(|mean|, 1)``) in either direction and the last
    window is no worse than the best window so far by more than that, at ``patience`` checks in a row.  A mean over
    ``window`` steps smooths the noise of Monte-Carlo ELBO estimates; a loss that rises, or has not come back to its
    best, is not converged (a guide started wide of its warm start climbs back over several windows, and one bad
    window must not end it).  Two noisy window means can also agree by chance while the loss is still falling;
    asking for the criterion at consecutive checks makes such a false stop unlikely, at the cost of
    ``(patience - 1) * window`` more steps for a fit that has converged.

    Use it as the ``callback`` of :func:`~pyro_node_uq.infer.fit_svi` (``rule(step, loss)`` returns ``True`` to
    stop); :meth:`summary` says how the fit ended.

    :param int max_steps: the step budget.
    :param float rtol: relative improvement per window below which the fit has converged (``0``: never stop early;
        the summary's ``converged`` is then ``None``).
    :param int window: steps per averaging window.
    :param int min_steps: no stop before this many steps.
    :param int patience: consecutive checks (one per window) at which the criterion must hold.

    Example::

        >>> rule = StoppingRule(max_steps=1000, rtol=1e-3, window=10)
        >>> stop = next(step for step in range(1000) if rule(step, 100.0 + 50.0 / (1 + step)))
        >>> s = rule.summary(); s.converged, s.steps == stop + 1 < 1000
        (True, True)
        >>> flat = StoppingRule(max_steps=1000, rtol=1e-3, window=10, patience=2)
        >>> [flat(step, 2.0 if step < 10 else 1.0) for step in range(40)][19::10]  # checks after 20, 30, 40 steps
        [False, False, True]
    """

    def __init__(self, max_steps, rtol=1e-3, window=50, min_steps=0, patience=2):
        self.max_steps = check_int(max_steps, "max_steps", 1)
        self.window = check_int(window, "window", 1)
        self.min_steps = check_int(min_steps, "min_steps", 0)
        self.patience = check_int(patience, "patience", 1)
        self.quiet = 0  # checks in a row at which the criterion held
        self.rtol = float(rtol)
        if not self.rtol >= 0:
            raise ValueError(f"stop_rtol must be >= 0, got {rtol!r}")
        self.losses, self.converged, self.improvement, self.best = [], False, math.nan, math.inf

    def __call__(self, step, loss):
        self.losses.append(float(loss))
        n, w = len(self.losses), self.window
        if self.rtol == 0 or n < 2 * w or n % w:
            return False
        prev, last = sum(self.losses[-2 * w:-w]) / w, sum(self.losses[-w:]) / w
        self.best = min(self.best, prev, last)
        scale = max(abs(last), 1.0)
        self.improvement = (prev - last) / scale
        quiet = abs(self.improvement) < self.rtol and (last - self.best) / scale < self.rtol
        self.quiet = self.quiet + 1 if quiet else 0
        self.converged = self.quiet >= self.patience and n >= self.min_steps
        return self.converged

    def summary(self):
        """The :class:`Convergence` of the fit so far."""
        steps = len(self.losses)
        slope = loss_slope(self.losses, self.window)
        if self.rtol == 0:
            return Convergence(None, f"fixed budget of {steps} steps (no stopping rule)", steps, slope)
        if self.converged:
            return Convergence(True, f"relative improvement {self.improvement:.2g} per {self.window} steps below "
                                     f"{self.rtol:g} after {steps} steps", steps, slope)
        if steps < self.max_steps:
            return Convergence(False, f"stopped by its caller after {steps} of {self.max_steps} steps", steps, slope)
        return Convergence(False, f"step budget of {self.max_steps} ran out (last relative improvement "
                                  f"{self.improvement:.2g} per {self.window} steps, tolerance {self.rtol:g})",
                           steps, slope)

    def warn_if_unfinished(self, name):
        """Give a :class:`BudgetExhaustedWarning` naming fit ``name`` when the budget ran out first; return the
        :meth:`summary`."""
        summary = self.summary()
        if summary.converged is False and summary.steps >= self.max_steps:
            warnings.warn(f"{name}: {summary.reason}; the fit did not converge", BudgetExhaustedWarning,
                          stacklevel=3)
        return summary
