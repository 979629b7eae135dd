"""Solve a neural ODE for a whole ensemble of weight particles and units in one vectorised solve, with doses.

    dh/dt = R(h, x(t); w) + u(t),   y_mean(t) = Z(h, x(t); w)   (or the first ``obs_dim`` components of h)

for every weight particle (leading batch dims of the weights) and unit (the last batch dim) at once.  Doses come
as a :class:`~pyro_node_uq.distributions.doses.DoseSchedule`: a bolus adds its amount to a compartment of h at its
time, an infusion adds its rate to ``u`` between its start and end.  Units may have their own observation times
(padded ``(N, T)`` times with a mask).

The algorithm: merge every unit's observation times, the dose times and the infusion ends into ONE sorted union
grid.  Dose breakpoints cut it into segments; each segment is one solve of the whole ensemble (the fast
fixed-step path of :mod:`~pyro_node_uq.distributions.fixed_grid` or ``torchdiffeq``, as
:func:`~pyro_node_uq.distributions.solve_path.select` decides), restarted after the jumps at
its end, so neither fixed-step nor adaptive methods ever step over an event.  An infusion's constant rate enters
the last bias of R on its segments (the fast path stays usable).  Each unit then reads its states at its own
times from the union grid; the per-unit masks stay inside.  Without doses and with shared times the grid is the
observation times and this is one solve, as before.  With a fixed-step method the union grid is finer than a
unit's own times, so a unit's states depend, within the method's discretisation error, on which other units share
the solve; use ``substeps`` or an adaptive method where that error matters.

The state at a bolus time includes the dose (dose first, then observe); the initial state ``h0`` is the state at
``t0`` (default: the earliest observation or dose time) before any dose given at ``t0``.
"""
import itertools
import warnings
from typing import NamedTuple

import torch

from ..validation import OnDivergence
from .fixed_grid import solve_node_fixed
from .fused_node import fused_node_solve
from .interpolation import Interpolator
from .node_solve_check import check_solve_args
from .solve import NODEDivergenceError, ODESolver
from .solve_path import GRID_PATHS, select
from .step_check import check_fixed_step

__all__ = ["NODESolution", "solve_checked", "solve_node"]


class NODESolution(NamedTuple):
    """What :func:`solve_node` returns.

    :param torch.Tensor hidden: hidden states ``batch + (T, hidden_dim)`` at each unit's observation times.
    :param torch.Tensor mean: noise-free observation means ``batch + (T, obs_dim)``.
    :param torch.Tensor diverged: boolean ``batch``: members whose solve diverged (their states are zeroed).
    """

    hidden: torch.Tensor
    mean: torch.Tensor
    diverged: torch.Tensor


def _field(R, params, batch, interp, rate):
    """The vector field ``f(t, h) = R(h, x(t)) + rate`` for ``torchdiffeq`` and the step check."""

    def f(t, h):
        out = R(params, h) if interp is None else R(params, torch.cat([h, interp(t).expand(batch + (-1,))], -1))
        return out if rate is None else out + rate

    return f


def _with_rate(R, params, rate):
    """R's parameters with the infusion ``rate`` folded into its last bias (``R(h) + rate``)."""
    key = f"{R.name}.{R.num_layers - 1}.bias"
    return {**params, key: params[key] + rate}


def _path(solver, R, grid, rate):
    """The execution path of one segment's solve (:func:`~pyro_node_uq.distributions.solve_path.select`)."""
    return select(solver, R, infusion=rate is not None, times_grad=grid.requires_grad,
                  tracing=torch.jit.is_tracing())


def _solve_segment(R, params, h, grid, batch, interp, solver, rate, path, check=False):
    """States ``(len(grid),) + batch + (H,)`` of one segment between events, started from ``h`` at ``grid[0]``,
    on the execution ``path``; ``check``: the fast path runs its own step-doubling check (a solve of one
    segment)."""
    if path in GRID_PATHS:
        p = params if rate is None else _with_rate(R, params, rate)
        return solve_node_fixed(R, p, h, grid, batch, interp, solver.method, solver.substeps, solver.compile,
                                step_check=check, path=path)
    h = h.expand(batch + h.shape[-1:])
    return solver.odeint(_field(R, params, batch, interp, rate), h, grid, params=tuple(params.values()))


def _step_check(R, params, batch, interp, solver, widest):
    """The fast path's step-doubling check (the torchdiffeq path runs its own), once per solve, on the segment
    with the widest step."""
    if widest is None or not solver.step_check or torch.jit.is_tracing():
        return
    step, seg, hs, rate = widest
    check_fixed_step(_field(R, params, batch, interp, rate), hs, seg, solver.method, step)


def _union_grid(t, t_mask, doses, t0):
    """Sorted unique grid of observation times, dose breakpoints (up to the last observation) and ``t0``."""
    parts = [t[t_mask].reshape(-1)]
    if t0 is not None:
        parts.append(torch.as_tensor(t0, dtype=t.dtype, device=t.device).reshape(1))
    grid = torch.unique(torch.cat(parts))
    if doses is None or not doses.mask.any():
        return grid, grid[:1]
    events = doses.breakpoints()
    events = events[events <= grid[-1]]
    grid = torch.unique(torch.cat([grid, events]))
    return grid, torch.unique(torch.cat([grid[:1], events]))


def _solve_grid(R, params, h0, grid, events, batch, interp, solver, doses):
    """States on the whole union grid, ``(G,) + batch + (H,)``, one segment between consecutive events."""
    H = R.sizes[-1]
    h = h0.expand(batch + (H,)) if doses is None else h0 + doses.bolus_at(grid[0], H)
    if grid.shape[0] == 1:
        return h.expand(batch + (H,))[None]
    if doses is None:  # no events after the start: one segment
        cuts = [0, grid.shape[0] - 1]
    else:
        cuts = torch.searchsorted(grid, torch.cat([events, grid[-1:]])).tolist()
    out, widest = [h.expand(batch + (H,))[None]], None
    single = sum(b > a for a, b in itertools.pairwise(cuts)) == 1  # no events inside: the fast path checks itself
    infusions = doses is not None and bool((doses.rate[doses.mask] > 0).any())
    for a, b in itertools.pairwise(cuts):
        if b == a:
            continue
        seg = grid if b - a == grid.shape[0] - 1 else grid[a:b + 1]
        rate = None
        if infusions:
            rate = doses.infusion_on(seg[0], seg[-1], H)
            rate = rate if rate.any() else None
        path = _path(solver, R, seg, rate)
        hs = _solve_segment(R, params, h, seg, batch, interp, solver, rate, path, check=single and solver.step_check)
        if doses is None and b - a == grid.shape[0] - 1:  # one segment over the whole grid: its states are the grid's
            return hs
        if solver.step_check and path in GRID_PATHS and not single:
            step = float((seg[1:] - seg[:-1]).max()) / solver.substeps
            widest = (step, seg, hs, rate) if widest is None or step > widest[0] else widest
        h = hs[-1] if doses is None else hs[-1] + doses.bolus_at(seg[-1], H)
        out.append(torch.cat([hs[1:-1], h[None]]) if hs.shape[0] > 1 else h[None])
    _step_check(R, params, batch, interp, solver, widest)
    return torch.cat(out)


def _at_unit_times(values, grid, t, t_mask, batch):
    """Read ``values`` ``(G,) + batch + (K,)`` at each unit's own times: ``(T,) + batch + (K,)``."""
    if t.dim() == 1:
        return values if t.shape == grid.shape else values[torch.searchsorted(grid, t)]
    idx = torch.searchsorted(grid, torch.where(t_mask, t, grid[0])).clamp(max=grid.shape[0] - 1)  # (N, T)
    idx = idx.T.reshape((t.shape[1],) + (1,) * (len(batch) - 1) + (t.shape[0], 1))
    return values.gather(0, idx.expand((t.shape[1],) + values.shape[1:]))


def _detect_divergence(hs, solver, on_divergence):
    """Boolean ``batch`` of diverged members (non-finite or huge states); raises or warns per ``on_divergence``."""
    bad = ~(hs.detach().abs().amax((0, -1)) <= solver.max_abs)  # NaN and inf included: the maximum keeps them
    return _report_divergence(bad, solver, on_divergence)


def _report_divergence(bad, solver, on_divergence):
    """``bad``, the boolean ``batch`` of diverged members, after raising or warning per ``on_divergence``."""
    if bad.any():
        msg = (f"NODE solve diverged for {int(bad.sum())} of {bad.numel()} ensemble members x trajectories "
               f"(non-finite or |h| > {solver.max_abs:g}); method={solver.method!r}")
        if on_divergence == "raise":
            raise NODEDivergenceError(msg + ". Use smaller prior scales, a stiffer-safe solver, or "
                                      "on_divergence='reject' to score them as -inf.")
        warnings.warn(msg + "; scored as -inf", RuntimeWarning)
    return bad


def solve_node(R, Z, params, t, x=None, h0=None, *, t_mask=None, x_times=None, doses=None, t0=None, obs_dim=None,
               interpolation="linear", solver=None, on_divergence="raise"):
    """Solve the NODE for every weight particle and unit in one vectorised solve (see the module docstring).

    :param BatchedMLP R: vector field network, input ``hidden_dim + input_dim``, output ``hidden_dim``.
    :param BatchedMLP Z: observation network (same inputs as R, output ``obs_dim``), or ``None`` to observe the
        first ``obs_dim`` hidden components.
    :param dict params: site name -> weight tensor with leading batch dims (particles, chains...).
    :param torch.Tensor t: observation times: ``(T,)`` shared, or ``(N, T)`` per unit (padded, see ``t_mask``).
    :param torch.Tensor x: inputs ``units + (Tx, input_dim)`` at ``x_times`` (default ``t``), or ``None``.
    :param torch.Tensor h0: initial state broadcastable to ``batch + (hidden_dim,)`` (default zeros), at ``t0``.
    :param torch.Tensor t_mask: boolean ``(N, T)``: real entries of per-unit times (padding is ignored; the
        outputs there repeat a real time's value and must be masked out of any likelihood).
    :param torch.Tensor x_times: shared sample times ``(Tx,)`` of ``x``.
    :param DoseSchedule doses: bolus and infusion events per unit (or one unit, shared by all).
    :param float t0: start of the solve (default: the earliest observation or dose time).
    :param int obs_dim: observed components when ``Z`` is ``None``.
    :param str interpolation: ``"linear"`` or ``"cubic"`` interpolation of ``x``.
    :param solver: an :class:`~pyro_node_uq.distributions.ODESolver` or a dict of its options.
    :param str on_divergence: ``"raise"`` a :class:`~pyro_node_uq.distributions.NODEDivergenceError`, or
        ``"reject"``: flag the diverged members in :attr:`NODESolution.diverged` (with a warning), which an
        observation model scores as ``-inf``.
    :rtype: NODESolution

    Example (a one-compartment model, dA/dt = -0.5 A, with boluses of 1 at t = 0 and t = 1)::

        >>> from pyro_node_uq.nn import BatchedMLP
        >>> from pyro_node_uq.distributions import DoseSchedule
        >>> R = BatchedMLP("R", (1, 1))                                     # a linear field: R(h) = w h + b
        >>> params = {"R.0.weight": torch.tensor([[-0.5]]), "R.0.bias": torch.zeros(1)}
        >>> doses = DoseSchedule.from_lists([[0.0, 1.0]], [[1.0, 1.0]])
        >>> sol = solve_node(R, None, params, torch.tensor([0.0, 0.5, 1.0, 2.0]), doses=doses, obs_dim=1,
        ...                  solver={"method": "dopri5"})
        >>> [round(v, 4) for v in sol.mean[0, :, 0].tolist()]              # exp(-0.5 t) + exp(-0.5 (t - 1))
        [1.0, 0.7788, 1.6065, 0.9744]
    """
    batch, t_mask, obs_dim = check_solve_args(R, Z, params, t, x, x_times, h0, t_mask, doses, t0, obs_dim)
    on_divergence = OnDivergence(on_divergence)
    return solve_checked(R, Z, params, t, x, h0, t_mask=t_mask, x_times=x_times, doses=doses, t0=t0,
                         obs_dim=obs_dim, interpolation=interpolation, solver=solver, on_divergence=on_divergence,
                         batch=batch)


def solve_checked(R, Z, params, t, x, h0, *, t_mask, x_times, doses, t0, obs_dim, interpolation, solver,
                  on_divergence, batch):
    """:func:`solve_node` after :func:`~pyro_node_uq.distributions.node_solve_check.check_solve_args` (whose
    ``batch``, full ``t_mask`` and ``obs_dim`` it takes) and with a checked
    :class:`~pyro_node_uq.validation.OnDivergence`: for a caller that has checked the arguments itself, such as
    :class:`~pyro_node_uq.distributions.NODETrajectory`, so that a model evaluation checks them once."""
    if interpolation not in ("linear", "cubic"):
        raise ValueError(f"interpolation: expected 'linear' or 'cubic', got {interpolation!r}")
    solver = ODESolver.coerce(solver)
    H = R.sizes[-1]
    interp = None
    if x is not None and R.sizes[0] > H:
        interp = Interpolator(t if x_times is None else x_times, x, interpolation)
    h0 = t.new_zeros(H) if h0 is None else h0
    if Z is None and doses is None and t0 is None:  # the common solve as one node of the autograd graph
        fused = fused_node_solve(R, params, h0, t, interp, batch, solver, obs_dim)
        if fused is not None:
            return NODESolution(fused[0], fused[1], _report_divergence(fused[2], solver, on_divergence))
    if t.dim() == 1 and doses is None and t0 is None:
        grid, events = t, t[:1]
    else:
        grid, events = _union_grid(t, t_mask, doses, t0)
    hs = _solve_grid(R, params, h0, grid, events, batch, interp, solver, doses)
    bad = _detect_divergence(hs, solver, on_divergence)
    hs = hs.masked_fill(bad[..., None], 0.0)  # unconditionally: a traced (jit) potential keeps the rejection
    if Z is None:
        mean = hs[..., :obs_dim]
    elif interp is None:
        mean = Z(params, hs)
    else:
        xs = interp.at_grid(grid).movedim(-2, 0)  # (G,) + units + (D,)
        xs = xs.reshape(xs.shape[:1] + (1,) * (len(batch) + 2 - xs.dim()) + xs.shape[1:])
        mean = Z(params, torch.cat([hs, xs.expand(hs.shape[:-1] + xs.shape[-1:])], dim=-1))
    hidden = _at_unit_times(hs, grid, t, t_mask, batch).movedim(0, -2)
    mean = _at_unit_times(mean, grid, t, t_mask, batch).movedim(0, -2)
    return NODESolution(hidden, mean, bad)
