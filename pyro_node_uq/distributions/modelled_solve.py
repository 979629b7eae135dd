"""An ODE solve of a whole ensemble whose infusions end at times that differ between its members.

A modelled infusion's end (NONMEM's ``RATE`` -1 / -2: the rate or the duration is a model parameter) depends on
the member's parameters, so it cannot be a point of the grid the members share.  The solve runs on the shared grid
of :func:`~pyro_node_uq.distributions.solve_node` (observation times, bolus times, infusion starts and the given
infusions' ends), one segment between those events at a time.  In a segment where some member's infusion ends,
each member's knots are the segment's grid times and its own ends inside it, sorted (``n + 1 + m`` knots for
``n`` grid intervals and at most ``m`` ends; a member with fewer ends repeats the last time, pieces of length 0).
Piece ``k`` between a member's knots ``k`` and ``k + 1`` is solved in the piece time ``s`` in ``[k, k + 1]``,
``dh/ds = L_k (f(h) + u_k)`` with ``L_k`` the member's piece length and ``u_k`` its constant input there: one
solve of the whole ensemble over ``s`` in ``[0, n + m]``, restarted at every integer (``torchdiffeq``'s
``jump_t``; a fixed-step method steps from integer to integer, ``substeps`` times), and each member reads its grid
times at its own knots.  The states are then smooth functions of the ends, and their gradient with respect to them
(hence to the rate or duration) is exact, where an input switched inside a solver step would give none.  A segment
with no end inside is one solve in physical time, as :func:`~pyro_node_uq.distributions.solve_node` solves it.
The restarts cost: every grid interval of a segment with an end inside takes at least one step.

It serves autonomous fields (no inputs ``x``) solved by ``torchdiffeq``, the grey-box models' fields; which
pieces it solves depends on the parameters' values, so it refuses to be traced by ``torch.jit``; a fixed
``step_size`` becomes the number of equal steps per piece that keeps every member's steps at most that long.
"""
import dataclasses
import itertools
import math

import torch

from .node_solve import _at_unit_times, _detect_divergence, _field, _union_grid

__all__ = ["solve_modelled"]


def _input(doses, rate, end, started_at, mid, H, pieces=False):
    """The modelled infusions' input ``batch + (H,)``: the rates of the doses started by ``started_at`` and still
    running at ``mid`` (a number, or one time per member, ``batch``); with ``pieces``, ``mid`` is
    ``batch + (P,)``, one time per piece, and so is the result's ``batch + (P, H)``."""
    modelled, start, cmt = doses.modelled, doses.time, doses.compartment.clamp(0, H - 1)
    if pieces:
        modelled, start, cmt, rate, end = modelled[:, None], start[:, None], cmt[:, None], rate[..., None, :], \
            end[..., None, :]
    mid = mid[..., None] if torch.is_tensor(mid) else mid
    on = modelled & (start <= started_at) & (end > mid)
    values = torch.where(on, rate, torch.zeros_like(rate))
    return (values[..., None] * torch.nn.functional.one_hot(cmt, H)).sum(-2)


def _knots(seg, end, inside, m):
    """Per member, the sorted union of the segment's grid times and its ``m`` (at most) infusion ends inside it,
    ``batch + (n + 1 + m,)``; a member with fewer ends repeats the segment's end time (pieces of length 0)."""
    ends = torch.where(inside, end, torch.full_like(end, float("inf")))
    knots = torch.cat([seg.expand(end.shape[:-1] + seg.shape), ends], -1).sort(-1).values[..., :seg.shape[0] + m]
    return torch.where(torch.isinf(knots), seg[-1], knots)


def _solve_pieces(R, params, h, seg, doses, rate, end, fixed, inside, m, solver):
    """States at the segment's grid times ``(n + 1,) + batch + (H,)``, solved in the piece time ``s``: piece ``k``
    (between a member's knots ``k`` and ``k + 1``) is ``s`` in ``[k, k + 1]`` with ``dh/ds = L_k (f(h) + u_k)``,
    one ``torchdiffeq`` solve of the whole segment that restarts at every integer (the field jumps there)."""
    H = h.shape[-1]
    knots = _knots(seg, end, inside, m)
    length, mid = knots[..., 1:] - knots[..., :-1], (knots[..., 1:] + knots[..., :-1]) / 2
    pieces = length.shape[-1]
    u = fixed[..., None, :] + _input(doses, rate, end, seg[0], mid, H, pieces=True)  # batch + (P, H)

    def field(s, z):
        k = min(max(int(torch.floor(s)), 0), pieces - 1)
        return length[..., k, None] * (R(params, z) + u[..., k, :])

    marks = torch.arange(pieces + 1, dtype=h.dtype, device=h.device)
    scheme = solver.scheme
    options = {**solver.options, **({"jump_t": marks[1:-1]} if scheme.adaptive else {"perturb": True})}
    substeps = solver.substeps  # steps end on the pieces' bounds: a step size becomes steps per piece
    if solver.step_size is not None:
        substeps = max(1, math.ceil(float(length.detach().max()) / solver.step_size))
    pieced = dataclasses.replace(solver, options=options, step_size=None, substeps=substeps)
    hs = pieced.odeint(field, h, marks, params=(*params.values(), length, u))  # (P + 1,) + batch + (H,)
    before = (inside[..., None, :] & (end[..., None, :] < seg[:, None])).sum(-1)  # ends before each grid time
    idx = torch.arange(seg.shape[0], device=h.device) + before  # batch + (n + 1,): each grid time's knot
    return hs.movedim(0, -2).gather(-2, idx[..., None].expand(idx.shape + (H,))).movedim(-2, 0)


def solve_modelled(R, params, t, h0, doses, rate, end, *, t_mask=None, t0=None, solver, on_divergence):
    """States of every member at each unit's times, with infusions whose rates and ends are the members' own.

    :param R: the field (``R.sizes[-1]`` states; its last bias takes the input, as in
        :func:`~pyro_node_uq.distributions.solve_node`).
    :param dict params: the field's parameters.
    :param torch.Tensor t: observation times ``(T,)`` or ``(N, T)`` with ``t_mask``.
    :param torch.Tensor h0: initial state ``batch + (H,)`` (``batch`` ends with the ``N`` units) at ``t0``.
    :param ~pyro_node_uq.distributions.DoseSchedule doses: the doses (modelled ones coded -1 / -2).
    :param torch.Tensor rate, end: every dose's rate and end ``batch + (N, K)``
        (:meth:`~pyro_node_uq.distributions.DoseSchedule.resolved`).
    :param float t0: start of the solve (default: the earliest observation or dose time).
    :param ~pyro_node_uq.distributions.ODESolver solver: a ``torchdiffeq`` solver.
    :param ~pyro_node_uq.validation.OnDivergence on_divergence: what a diverged member does.
    :returns: ``(hidden, diverged)``: states ``batch + (T, H)`` and the diverged members ``batch``.
    """
    if torch.jit.is_tracing():  # the pieces depend on the parameters' values: a trace would freeze them
        raise ValueError("solve_modelled: infusions with modelled ends cannot be traced with torch.jit (e.g. "
                         "NUTS with jit_compile=True); run without jit_compile")
    H, batch = h0.shape[-1], h0.shape[:-1]
    rate, end = rate.expand(batch + rate.shape[-1:]), end.expand(batch + end.shape[-1:])
    t_mask = torch.ones_like(t, dtype=torch.bool) if t_mask is None else t_mask
    grid, events = _union_grid(t, t_mask, doses, t0)
    cuts = torch.searchsorted(grid, torch.cat([events, grid[-1:]])).tolist()
    h = h0 + doses.bolus_at(grid[0], H)
    out = [h[None]]
    for a, b in itertools.pairwise(cuts):
        if b == a:
            continue
        seg = grid[a:b + 1]
        fixed = doses.infusion_on(seg[0], seg[-1], H)
        inside = doses.modelled & (end > seg[0]) & (end < seg[-1])  # (an end implies its start is at seg[0] or before)
        m = int(inside.sum(-1).max()) if inside.numel() else 0
        if m:
            hs = _solve_pieces(R, params, h, seg, doses, rate, end, fixed, inside, m, solver)[1:]
        else:  # no member's infusion ends inside: one solve in physical time, as for given infusions
            u = fixed + _input(doses, rate, end, seg[0], (seg[0] + seg[1]) / 2, H)
            hs = solver.odeint(_field(R, params, batch, None, u), h, seg, params=(*params.values(), u))[1:]
        h = hs[-1] + doses.bolus_at(seg[-1], H)
        out.append(torch.cat([hs[:-1], h[None]]))
    hs = torch.cat(out)
    bad = _detect_divergence(hs, solver, on_divergence)
    hs = hs.masked_fill(bad[..., None], 0.0)
    return _at_unit_times(hs, grid, t, t_mask, batch).movedim(0, -2), bad
