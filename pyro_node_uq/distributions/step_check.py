"""Solver limits: how far a fixed step is from stable (a step-doubling check), and the adaptive step budget.

A fixed-step solve (``euler``, ``rk4``...) with a step far above the vector field's stable step does not fail: it
returns large, wrong states.  After such a solve, :func:`check_fixed_step` takes one step of size ``h`` and two of
size ``h / 2`` from the solved state where it is largest; when the two disagree by more than the state itself the
step is beyond the stable range, and ONE warning per solve says so (not one per ensemble member).
"""
import warnings

import torch
import torchdiffeq

__all__ = ["StepSizeWarning", "DEFAULT_MAX_NUM_STEPS", "ADAPTIVE", "TrackTime", "check_fixed_step",
           "check_solver_options", "step_doubling_error", "warn_if_unstable"]

#: adaptive torchdiffeq methods and the step budget they get by default (per interval between output times)
ADAPTIVE = {"dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun"}
DEFAULT_MAX_NUM_STEPS = 1000
#: every torchdiffeq method name
METHODS = ADAPTIVE | {"euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams",
                      "scipy_solver"}


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


def check_solver_options(solver):
    """Validate an :class:`~pyro_node_uq.distributions.ODESolver` 's fields; errors name the field."""
    from ..validation import check_choice, check_positive

    check_choice(solver.method, "solver.method", METHODS)
    try:
        solver.rtol, solver.atol = check_positive(solver.rtol, "rtol"), check_positive(solver.atol, "atol")
        solver.max_abs = check_positive(solver.max_abs, "max_abs")
        if solver.step_size is not None:
            solver.step_size = check_positive(solver.step_size, "step_size")
    except (TypeError, ValueError) as e:
        raise type(e)(f"ODESolver: {e}") from None
    if not isinstance(solver.options, dict):
        raise TypeError(f"ODESolver: options must be a dict of torchdiffeq options, got {solver.options!r}")
    if "max_num_steps" in solver.options:
        from ..validation import check_int

        check_int(solver.options["max_num_steps"], "solver.options['max_num_steps']", 1)


#: the most fixed steps one solve may take (beyond it a too-small step_size, not a model)
MAX_FIXED_STEPS = 10 ** 7


def check_step_count(t, step_size):
    """``step_size``, after checking that stepping over ``t`` with it takes at most :data:`MAX_FIXED_STEPS`."""
    steps = float((t[-1] - t[0]).abs()) / float(step_size) if len(t) > 1 else 0.0
    if not steps <= MAX_FIXED_STEPS:
        raise ValueError(f"step_size: {float(step_size):.3g} needs {steps:.3g} steps over t in [{float(t[0]):.6g}, "
                         f"{float(t[-1]):.6g}], more than {MAX_FIXED_STEPS:g}; use a larger step_size")
    return step_size


def step_doubling_error(func, y, t0, h, method):
    """Relative difference of one step ``h`` and two steps ``h / 2`` of ``method`` from ``y`` at ``t0``.

    :returns: ``max |y_h - y_{h/2}| / (max |y_{h/2}| + max |y| + tiny)`` (a float; ``nan`` if a step is not finite).
    """
    grid = torch.stack([t0, t0 + h])
    one = torchdiffeq.odeint(func, y, grid, method=method, options={"step_size": h})[-1]
    two = torchdiffeq.odeint(func, y, grid, method=method, options={"step_size": h / 2})[-1]
    scale = two.abs().amax() + y.abs().amax() + torch.finfo(y.dtype).tiny
    return float((one - two).abs().amax() / scale)


def check_fixed_step(func, solution, t, method, step_size, threshold=1.0):
    """Warn once if the fixed step of a finished solve is far above the stable step.

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
        k = int(solution.detach().abs().flatten(1).amax(1)[:-1].argmax())  # where the state is largest
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
