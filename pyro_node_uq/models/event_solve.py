"""Solve a NODE through dose events: the solve restarts at every bolus and infusion switch of any unit.

The units' event times are merged into one shared list of breakpoints; between two breakpoints every unit and
every weight particle is integrated in ONE solver call (a unit without an event at a breakpoint gets a zero
jump).  An observation at a dose time sees the state before the dose (a trough sample).
"""
import math

import torch

from ..distributions.solve import NODEDivergenceError, current_divergence_policy

__all__ = ["check_diverged", "solve_events"]


def solve_events(field, h0, t, doses, solver, batch_shape):
    """Hidden states at the observation times through the doses' jumps and infusions.

    :param field: ``field(time, h) -> dh/dt`` without the infusions, batched over ``batch_shape + (H,)``.
    :param torch.Tensor h0: initial state, broadcastable to ``batch_shape + (H,)``, at ``min(t[0], first dose)``.
    :param torch.Tensor t: strictly increasing observation times ``(T,)``.
    :param doses: :class:`~pyro_node_uq.data.units.Doses` of the ``N = batch_shape[-1]`` units.
    :param solver: :class:`~pyro_node_uq.distributions.ODESolver`; ``"rk4"`` with a ``step_size`` runs a plain
        RK4 loop here with every output time on a step, other options go through its ``odeint``.
    :param torch.Size batch_shape: ensemble dims ``(..., N)``.
    :returns: hidden states ``batch_shape + (T, H)``.

    Example (one unit, a bolus of 2 at t = 1 into dh/dt = -h)::

        >>> from pyro_node_uq.data.units import Doses
        >>> from pyro_node_uq.distributions import ODESolver
        >>> t = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
        >>> doses = Doses.bolus(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64))
        >>> hs = solve_events(lambda s, h: -h, torch.zeros(1), t, doses, ODESolver("dopri5"), torch.Size([1]))
        >>> [round(v, 6) for v in hs[0, :, 0].tolist()]  # 2 exp(-1) after the dose; the trough at t=1 is 0
        [0.0, 0.0, 0.735759]
    """
    H = h0.shape[-1]
    state = h0.expand(batch_shape + (H,))
    if doses is None or not bool(doses.mask.any()):
        return (_rk4(field, state, t, solver.step_size) if _fast(solver) else solver.odeint(field, state, t)).movedim(0, -2)
    breaks = doses.breakpoints().to(t)
    start = torch.minimum(t[0], breaks[0]).reshape(1)
    bounds = torch.unique(torch.cat([start, breaks[breaks <= t[-1]]]))
    out = [None] * len(t)
    if bool(t[0] == bounds[0]):
        out[0] = state
    for k, lo in enumerate(bounds):
        state = state + doses.bolus_at(lo, H).to(state)
        rate = doses.infusion_rate(lo, H).to(state)
        hi = bounds[k + 1] if k + 1 < len(bounds) else t[-1]
        inside = ((t > lo) & (t <= hi)).nonzero().flatten()
        grid = torch.unique(torch.cat([lo.reshape(1), t[inside], hi.reshape(1)]))
        if len(grid) < 2:
            continue
        f = field if not bool(rate.any()) else (lambda s, h, r=rate: field(s, h) + r)
        hs = _rk4(f, state, grid, solver.step_size) if _fast(solver) else solver.odeint(f, state, grid)
        for j in inside.tolist():
            out[j] = hs[int((grid == t[j]).nonzero()[0, 0])]
        state = hs[-1]
    return torch.stack(out, dim=-2)


def _fast(solver):
    return solver.method == "rk4" and solver.step_size is not None and not solver.adjoint


def _rk4(f, y, grid, step_size):
    """Classic RK4 from ``grid[0]`` to ``grid[-1]`` in equal steps no longer than ``step_size``; the states at
    ``grid`` come from the cubic Hermite dense output of the steps (error of the same order as the steps), so the
    number of steps does not grow with the number of output times.  Returns ``(len(grid),) + y.shape``."""
    a, b = float(grid[0]), float(grid[-1])
    n = max(1, math.ceil((b - a) / step_size - 1e-9))
    h = (b - a) / n
    ys, ks = [y], []
    for i in range(n):
        s = a + i * h
        k1 = f(s, y)
        k2 = f(s + h / 2, y + (h / 2) * k1)
        k3 = f(s + h / 2, y + (h / 2) * k2)
        k4 = f(s + h, y + h * k3)
        y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        ys.append(y)
        ks.append(k1)
    ks.append(f(b, y))
    ys, ks = torch.stack(ys), torch.stack(ks) * h
    pos = ((grid - a) / h).clamp(0, n)
    i = pos.floor().long().clamp(max=n - 1)
    u = (pos - i).reshape((-1,) + (1,) * (y.dim()))
    u2, u3 = u * u, u * u * u
    return ((2 * u3 - 3 * u2 + 1) * ys[i] + (u3 - 2 * u2 + u) * ks[i] + (3 * u2 - 2 * u3) * ys[i + 1]
            + (u3 - u2) * ks[i + 1])


def check_diverged(hs, solver, policy):
    """Boolean ``batch`` mask of diverged members (non-finite or above ``solver.max_abs``); raises under ``"raise"``.

    :param torch.Tensor hs: states ``batch + (T, H)``.
    :param solver: the :class:`~pyro_node_uq.distributions.ODESolver` (its ``max_abs``).
    :param str policy: the model's ``on_divergence`` (a :func:`~pyro_node_uq.distributions.divergence_policy`
        block overrides it).

    Example::

        >>> from pyro_node_uq.distributions import ODESolver
        >>> check_diverged(torch.tensor([[[1.0]], [[float("nan")]]]), ODESolver(), "reject").tolist()
        [False, True]
    """
    bad = ~torch.isfinite(hs).all(-1).all(-1) | (hs.detach().abs().amax((-2, -1)) > solver.max_abs)
    if bad.any() and current_divergence_policy(policy) == "raise":
        raise NODEDivergenceError(f"NODE solve through dose events diverged for {int(bad.sum())} of {bad.numel()} "
                                  f"ensemble members x units (non-finite or |h| > {solver.max_abs:g}). Use smaller "
                                  "prior scales, a smaller step_size, or on_divergence='reject'.")
    return bad
