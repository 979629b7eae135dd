"""Solver limits: how far a fixed step is from stable (ONE step-doubling check), and the adaptive step budget.

A fixed-step solve (``euler``, ``rk4``...) with a step far above the vector field's stable step does not fail: it
returns large, wrong states.  After such a solve, :func:`check_fixed_step` takes one step of size ``h`` and two of
size ``h / 2`` from the solved state where it is largest; when the two disagree by more than the state itself the
step is beyond the stable range, and ONE warning per solve says so (not one per ensemble member).
"""
import warnings

import torch

__all__ = [
    "DEFAULT_MAX_NUM_STEPS",
    "StepSizeWarning",
    "TrackTime",
    "check_fixed_step",
    "check_step_count",
    "largest_state",
    "relative_difference",
    "step_doubling_error",
    "warn_if_unstable",
]

#: the step budget adaptive methods get by default (per interval between output times)
DEFAULT_MAX_NUM_STEPS = 1000


class StepSizeWarning(RuntimeWarning):
    """A fixed-step ODE solve used a step far above the vector field's stable step: its states are unreliable."""


class TrackTime:
    """Wraps a vector field and remembers the furthest time it was evaluated at (for the step-budget error)."""

    def __init__(self, func):
        self.func, self.t = func, None

    def __call__(self, t, y):
        self.t = t
        return self.func(t, y)

    def reached(self):
        return float("nan") if self.t is None else float(self.t)


#: the most fixed steps one solve may take (beyond it a too-small step_size, not a model)
MAX_FIXED_STEPS = 10 ** 7


def check_step_count(t, step_size):
    """``step_size``, after checking that stepping over ``t`` with it takes at most :data:`MAX_FIXED_STEPS`."""
    steps = float((t[-1] - t[0]).abs()) / float(step_size) if len(t) > 1 else 0.0
    if not steps <= MAX_FIXED_STEPS:
        raise ValueError(f"step_size: {float(step_size):.3g} needs {steps:.3g} steps over t in [{float(t[0]):.6g}, "
                         f"{float(t[-1]):.6g}], more than {MAX_FIXED_STEPS:g}; use a larger step_size")
    return step_size


def largest_state(solution):
    """Index ``k`` of the output time (not the last) where the solved states ``(T,) + batch`` are largest in
    absolute value: the check steps from there."""
    return int(solution.detach().abs().flatten(1).amax(1)[:-1].argmax())


def relative_difference(one, two, y):
    """``max |one - two| / (max |two| + max |y| + tiny)``: the check's relative error of one step (``one``)
    against two half steps (``two``) from ``y``, a float (``nan`` if a step is not finite)."""
    return float((one - two).abs().amax() / (two.abs().amax() + y.abs().amax() + torch.finfo(y.dtype).tiny))


def step_doubling_error(func, y, t0, h, method):
    """Relative difference of one step ``h`` and two steps ``h / 2`` of ``method`` from ``y`` at ``t0``
    (:func:`relative_difference`), stepping with the solver object's own ``step``.

    :param func: the vector field ``func(t, y)``.
    :param method: a fixed-step method's name or solver object.
    """
    from .solvers import get_solver

    scheme = get_solver(method)
    h = torch.as_tensor(h, dtype=y.dtype, device=y.device)
    t0 = torch.as_tensor(t0, dtype=y.dtype, device=y.device)
    one = scheme.step(func, y, t0, h)
    two = scheme.step(func, scheme.step(func, y, t0, h / 2), t0 + h / 2, h / 2)
    return relative_difference(one, two, y)


def check_fixed_step(func, solution, t, method, step_size, threshold=1.0):
    """Warn once if the fixed step of a finished solve is far above the stable step: one step of the solve's
    width against two half steps, from the output time where the state is largest.  (The fast fixed-step path runs
    the same check with its own steps, see :mod:`~pyro_node_uq.distributions.fixed_grid`.)

    :param func: the vector field ``func(t, y)``.
    :param solution: the solved states ``(T,) + batch``.
    :param t: the output times ``(T,)``.
    :param str method: the fixed-step method.
    :param float step_size: the step (``None``: the solver stepped on ``t``, so the largest spacing of ``t``).
    :param float threshold: relative step-doubling error above which the step counts as unstable.
    :returns: the relative error (``nan`` when nothing was checked).
    """
    if len(t) < 2 or not torch.isfinite(solution).all():
        return float("nan")  # divergence is reported by the caller
    h = (t[1:] - t[:-1]).max() if step_size is None else torch.as_tensor(step_size, dtype=t.dtype)
    with torch.no_grad():
        k = largest_state(solution)
        err = step_doubling_error(func, solution[k].detach(), t[k].detach(), h, method)
    warn_if_unstable(err, method, h, t[k], threshold)
    return err


def warn_if_unstable(err, method, h, t_k, threshold=1.0):
    """The warning of :func:`check_fixed_step` for a relative step-doubling error ``err`` found at ``t_k``."""
    if not err <= threshold:
        warnings.warn(f"ODE solve with method {method!r} and step {float(h):.3g}: one step and two half steps "
                      f"differ by {err:.3g} times the state at t={float(t_k):.4g}, so the step is far above the "
                      "vector field's stable step and the solution is unreliable. Use a smaller step_size, or an "
                      "adaptive method (solver={'method': 'dopri5'}).", StepSizeWarning, stacklevel=5)
