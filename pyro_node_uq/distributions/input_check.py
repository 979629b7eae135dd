"""Inputs that change faster than the solver steps: detected and reported, never integrated silently wrong.

An input given at fine sample times (a drug bolus as a short pulse, a strain jump) is seen by the solver only at
its stage times.  A fixed-step method with a step wider than the pulse samples it at arbitrary phases (rk4 with
step 0.1 integrates a 0.05-wide bolus to 125%), and an adaptive method whose steps are set by a smooth field can
step over it entirely (0%).  :func:`input_resolution_error` measures how much of the input survives sampling on a
grid of the solver's step: the input linearly interpolated from that grid, compared with the input itself, as a
fraction of the input's range.  :func:`check_input_resolution` warns (:class:`InputResolutionWarning`) above 20%.
"""
import warnings

import torch

from .solvers import get_solver

__all__ = ["InputResolutionWarning", "check_input_resolution", "input_resolution_error", "solver_step"]


class InputResolutionWarning(RuntimeWarning):
    """An input changes faster than the ODE solver's steps can resolve."""


def _interp(times, x, at):
    """Linear interpolation of ``x`` ``(..., T, D)`` given at ``times`` to the times ``at``, held at the ends."""
    at = at.clamp(times[0], times[-1])
    i = (torch.searchsorted(times, at, right=True) - 1).clamp(0, len(times) - 2)
    u = ((at - times[i]) / (times[i + 1] - times[i]))[:, None]
    return x[..., i, :] + u * (x[..., i + 1, :] - x[..., i, :])


def solver_step(solver, t):
    """The step the solver takes between output times ``t``: its ``step_size``, else the largest spacing of
    ``t`` (fixed-step methods step on ``t``; for adaptive ones it is the step a smooth field allows at least)."""
    if getattr(solver, "step_size", None) is not None and not get_solver(solver.method).adaptive:
        return float(solver.step_size)
    return float((t[1:] - t[:-1]).max()) if len(t) > 1 else None


def input_resolution_error(x_times, x, step):
    """Largest loss of the input ``x`` ``(..., T, D)`` at ``x_times`` when sampled every ``step``, per unit of
    the input's range (0: a grid of that step represents it; about 1: a feature narrower than the step is lost).

    Example::

        >>> times = torch.linspace(0, 1, 101)
        >>> bolus = ((times > 0.42) & (times < 0.47)).float()[None, :, None]  # a 0.05-wide pulse
        >>> round(input_resolution_error(times, bolus, 0.1), 2), round(input_resolution_error(times, bolus, 0.01), 2)
        (1.0, 0.0)
    """
    if x.shape[-2] < 3 or step is None or step <= 0:
        return 0.0
    times = x_times.detach()
    n = int(torch.ceil((times[-1] - times[0]) / step))
    grid = torch.cat([times[0] + step * torch.arange(n, dtype=times.dtype), times[-1:]])
    x = x.detach()
    back = _interp(grid, _interp(times, x, grid), times)
    spread = (x.amax(dim=(-2,) + tuple(range(x.dim() - 2))) - x.amin(dim=(-2,) + tuple(range(x.dim() - 2))))
    lost = (back - x).abs().amax(dim=(-2,) + tuple(range(x.dim() - 2)))
    rel = lost / spread.clamp(min=torch.finfo(x.dtype).tiny)
    return float(torch.where(spread > 0, rel, torch.zeros_like(rel)).max())


def check_input_resolution(x_times, x, solver, t, threshold=0.2):
    """Warn once when the input changes faster than ``solver`` steps between the output times ``t``.

    :returns: the relative error of :func:`input_resolution_error`.
    """
    step = solver_step(solver, t)
    err = input_resolution_error(x_times, x, step)
    if err > threshold:
        adaptive = get_solver(solver.method).adaptive
        fix = ("pass the input's sample times as jump points, solver={'options': {'jump_t': x_times}}, so the "
               "adaptive steps stop at every change" if adaptive else
               f"use step_size <= the input's shortest feature (the input's sample spacing "
               f"{float((x_times[1:] - x_times[:-1]).min()):.3g} is safe), or an adaptive method with jump_t")
        warnings.warn(f"x: the input changes faster than the ODE solver's steps (method {solver.method!r}, step "
                      f"{step:.3g}): sampled every step it loses up to {100 * err:.0f}% of its range, so a short "
                      f"pulse may be integrated wrongly or skipped; {fix}", InputResolutionWarning, stacklevel=3)
    return err

