"""An ODE solve of a whole ensemble whose infusions end at times that differ between its members.

A modelled infusion's end (NONMEM's ``RATE`` -1 / -2: the rate or the duration is a model parameter) depends on
the member's parameters, so it cannot be a point of the grid the members share.  The solve therefore runs on the
shared grid of :func:`~pyro_node_uq.distributions.solve_node` (observation times, bolus times, infusion starts
and the given infusions' ends) and, in an interval of that grid where some member's infusion ends, cuts the
interval at each member's own ends: the ``m + 1`` pieces ``[a, c_1], ..., [c_m, b]`` between the sorted ends
``c_j`` inside it (members with fewer ends get pieces of length 0) are each solved in the time ``s`` in ``[0, 1]``
with ``dh/ds = L (f(h) + u)``, ``L`` the member's piece length and ``u`` its constant input on the piece.  The
solution at ``b`` is then a smooth function of the ends, and its gradient with respect to them (hence to the rate
or duration) is exact, where an input switched inside a step would give none.  Intervals without such an end
are solved together in runs, as :func:`~pyro_node_uq.distributions.solve_node` solves its segments.

It serves autonomous fields (no inputs ``x``) solved by ``torchdiffeq``, the grey-box models' fields; which
pieces it solves depends on the parameters' values, so it refuses to be traced by ``torch.jit``.
"""
import torch

from .node_solve import _at_unit_times, _detect_divergence, _field, _union_grid

__all__ = ["solve_modelled"]


def _input(doses, rate, end, started_at, mid, H):
    """The modelled infusions' input on a piece ``batch + (H,)``: the rates of the doses started by
    ``started_at`` and still running at ``mid`` (a time inside the piece, ``batch`` or a number)."""
    mid = mid[..., None] if torch.is_tensor(mid) else mid
    on = doses.modelled & (doses.time <= started_at) & (end > mid)
    values = torch.where(on, rate, torch.zeros_like(rate))
    return (values[..., None] * torch.nn.functional.one_hot(doses.compartment.clamp(0, H - 1), H)).sum(-2)


def _pieces(a, b, end, inside):
    """Piece bounds ``batch + (m + 2,)`` of one interval ``[a, b]``: ``a``, each member's ends inside it sorted
    (``b`` where a member has fewer), ``b``."""
    m = int(inside.sum(-1).max())
    cuts = torch.where(inside, end, torch.full_like(end, float("inf"))).sort(-1).values[..., :m]
    cuts = torch.where(torch.isinf(cuts), b, cuts)
    return torch.cat([torch.full_like(cuts[..., :1], float(a)), cuts, torch.full_like(cuts[..., :1], float(b))], -1)


def _solve_pieces(R, params, h, bounds, doses, rate, end, fixed, a, solver, batch):
    """The state at the end of one interval, solved piece by piece in rescaled time."""
    unit = torch.tensor([0.0, 1.0], dtype=h.dtype, device=h.device)
    for j in range(bounds.shape[-1] - 1):
        lo, hi = bounds[..., j], bounds[..., j + 1]
        u = fixed + _input(doses, rate, end, a, (lo + hi) / 2, h.shape[-1])
        inner, length = _field(R, params, batch, None, u), (hi - lo)[..., None]
        h = solver.odeint(lambda s, z, f=inner, L=length: L * f(s, z), h, unit, params=tuple(params.values()))[-1]
    return h


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
    grid, events = _union_grid(t, torch.ones_like(t, dtype=torch.bool) if t_mask is None else t_mask, doses, t0)
    G = grid.shape[0]
    ends = end[doses.modelled.expand(end.shape)].detach()
    pos = torch.searchsorted(grid, ends.contiguous())
    exact = (pos < G) & (grid[pos.clamp(max=G - 1)] == ends)
    flagged = set((pos[~exact & (pos > 0) & (pos < G)] - 1).tolist())  # intervals with an end strictly inside
    cuts = set(torch.searchsorted(grid, events).tolist()) | set(pos[exact].tolist())
    h = h0 + doses.bolus_at(grid[0], H)
    out, i = [h[None]], 0
    while i < G - 1:
        j = i + 1
        while i not in flagged and j < G - 1 and j not in cuts and j not in flagged:
            j += 1
        fixed = doses.infusion_on(grid[i], grid[j], H)
        if i in flagged:
            inside = doses.modelled & (end > grid[i]) & (end < grid[j])
            bounds = _pieces(grid[i], grid[j], end, inside)
            hs = _solve_pieces(R, params, h, bounds, doses, rate, end, fixed, grid[i], solver, batch)[None]
        else:
            u = fixed + _input(doses, rate, end, grid[i], (grid[i] + grid[i + 1]) / 2, H)
            hs = solver.odeint(_field(R, params, batch, None, u), h, grid[i:j + 1], params=tuple(params.values()))[1:]
        h = hs[-1] + doses.bolus_at(grid[j], H)
        out.append(torch.cat([hs[:-1], h[None]]))
        i = j
    hs = torch.cat(out)
    bad = _detect_divergence(hs, solver, on_divergence)
    hs = hs.masked_fill(bad[..., None], 0.0)
    return _at_unit_times(hs, grid, t, t_mask, batch).movedim(0, -2), bad
