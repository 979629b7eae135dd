"""The NODE's whole fixed-step solve as ONE node of the autograd graph and one compiled call per direction.

At a few particles the cost of ``log p + grad`` is not the solve but the graph around it: the first layer's weight
sliced into its state and input halves, every weight and the initial state reshaped into the solver's layout, the
states transposed back, the observed components sliced out, diverged members found and masked.  Each of those is
a torch call and most are nodes of the autograd graph whose backward pass allocates and copies (a slice's backward
fills a zero tensor of its whole input); together they cost several times the compiled solve.  Here the compiled
library of :mod:`~pyro_node_uq.distributions.rk_fused` reads the weights in their own layout (the first layer as
one matrix, row stride ``H + D``; weights broadcast over the ensemble are expanded first), starts from a shared
initial state without expanding it, and writes the outputs in theirs: the states ``batch + (T, H)``, the observed
components ``batch + (T, obs_dim)`` and the divergence flags, all in the same call as the solve and its step check;
the backward call takes the outputs' gradients and writes the weights' in the weights' layout.  The arithmetic is
the compiled solve's, so states and gradients equal those of the general path of
:func:`~pyro_node_uq.distributions.node_solve.solve_node` to rounding.

It applies to the common solve: shared times ``(T,)``, no doses and no ``t0``, the observed components the first
``obs_dim`` states (no observation network), the ``"discrete_adjoint"`` path with the compiled library available,
inputs and times without gradient; :func:`fused_node_solve` returns ``None`` for anything else, and the general
path runs.
"""
import ctypes
import math

import torch

from ..nn import BatchedMLP
from . import rk_fused
from .fixed_grid import _check_tables, _grid, _Layout, _tableau_of
from .solve_path import select
from .step_check import warn_if_unstable

__all__ = ["fused_node_solve"]


class _Solve:
    """One solve: its inputs as the compiled library reads them, its forward call and its backward call."""

    def __init__(self, R, params, h0, t, interp, batch, solver, obs_dim):
        self.shapes = R.param_shapes()
        self.values = [params[k] for k in self.shapes]
        self.batch, self.solver, self.obs_dim, self.t = batch, solver, obs_dim, t
        layout = _Layout(R, params, batch)
        B, M, H = layout.B, layout.M, R.sizes[-1]
        D = R.sizes[0] - H
        lead = batch[:-1] + (1,) if layout.shared else batch
        # each weight as (B, out, in) in memory: itself when it is so laid out, else expanded to it
        self.mats = [v if v.numel() == B * math.prod(s) and v.is_contiguous() else v.expand(lead + s).contiguous()
                     for v, s in zip(self.values, self.shapes.values())]
        tab = _tableau_of(solver.method)
        _, dt, xs = _grid(layout, interp, t, solver.method, solver.substeps, batch)
        self.dts = dt if dt.dtype == torch.float64 else dt.double()
        self.x = xs
        self.h0, self.h0_shared = h0, h0.dim() == 1
        if self.h0_shared:
            self.h = h0.contiguous()
        else:
            self.h0_padded = (1,) * (len(batch) + 1 - h0.dim()) + tuple(h0.shape)
            self.h = layout.columns(h0.reshape(self.h0_padded), batch).contiguous()  # (B, H, M)
        L, K, S = R.num_layers - 1, dt.shape[0], len(tab.b)
        V = min(16 if t.dtype == torch.float32 else 8, 1 << (M - 1).bit_length())  # columns per block
        self.shape, self.saved = (B, H, M, D, K, S, L), B * -(-M // V) * K * S * V
        self.dims, self.sizes = rk_fused._shape_arrays((B, H, M, D, K, S, L, V, H + D, H + D, int(self.h0_shared)),
                                                       (H, *R.sizes[1:]))
        self.a, self.b = rk_fused._tableau(tuple(map(tuple, tab.a)), tuple(tab.b))
        self.check = None
        if solver.step_check and len(t) > 1:
            _, reuse, self.check_dts, widths, xs_check = _check_tables(layout, interp, t, dt, solver.method,
                                                                        solver.substeps, batch)
            self.check = (reuse, widths, xs_check)
        self.item, self.hidden_widths = t.element_size(), R.sizes[1:-1]

    def _pointers(self, mats):
        """Addresses of the first layer's input weights and bias, and C arrays of every layer's (state) weights
        and of the later layers' biases, in ``mats`` laid out as :attr:`mats`."""
        w0 = mats[0].data_ptr()
        weights = [w0] + [m.data_ptr() for m in mats[2::2]]
        return (w0 + self.shape[1] * self.item, mats[1].data_ptr(), (ctypes.c_void_p * len(weights))(*weights),
                rk_fused._ptrs(mats[3::2]))

    def forward(self, save):
        """``(hidden, mean, bad)``: the states ``batch + (T, H)`` (zero for diverged members), their first
        ``obs_dim`` components and the boolean ``batch`` of diverged members; with ``save`` what the backward call
        needs is kept."""
        B, H, M, _, K, _, _ = self.shape
        T = K // self.solver.substeps + 1
        h = self.h
        states = h.new_empty(K + 1, B, H, M)
        Y = h.new_empty(self.saved * H) if save else None
        acts = [h.new_empty(self.saved * n) for n in self.hidden_widths] if save else []
        hidden = h.new_empty(self.batch + (T, H))
        mean = h.new_empty(self.batch + (T, self.obs_dim))
        bad = torch.empty(self.batch, dtype=torch.bool, device=h.device)
        w_in, b_in, weights, biases = self._pointers(self.mats)
        out = (ctypes.c_double * 2)()
        if self.check is not None:
            reuse, widths, xs_check = self.check
            scratch = h.new_empty(5 * B * H * M)
            check = (reuse.data_ptr(), widths.data_ptr(), xs_check.data_ptr() if xs_check is not None else None,
                     scratch.data_ptr(), out)
        else:
            check = (None,) * 5
        rk_fused._checked(rk_fused.library().pnu_node_forward(
            int(h.dtype == torch.float64), self.dims, self.sizes, self.dts.data_ptr(), self.a, self.b, h.data_ptr(),
            self.x.data_ptr() if self.x is not None else None, w_in, b_in, weights, biases, states.data_ptr(), Y.data_ptr() if save else None, rk_fused._ptrs(acts),
            self.solver.substeps, *check, self.obs_dim, float(self.solver.max_abs), hidden.data_ptr(),
            mean.data_ptr(), bad.data_ptr()))
        if self.check is not None and out[1] >= 0:
            k = int(out[1])
            warn_if_unstable(out[0], self.solver.method, self.check_dts[k, 0], self.t[k])
        self.saved_tensors, self.bad = (Y, acts), bad
        return hidden, mean, bad

    def backward(self, g_hidden, g_mean, need_h0):
        """The gradients of ``h0`` (``None`` unless ``need_h0``) and of each of R's weights (in their order) from
        those of the states and of the observed components (either may be ``None``)."""
        B, H, M, _, K, _, _ = self.shape
        Y, acts = self.saved_tensors
        g_hidden = g_hidden.contiguous() if g_hidden is not None else None
        g_mean = g_mean.contiguous() if g_mean is not None else None
        grads = [torch.empty_like(m) for m in self.mats]
        grad_h, gs = self.h.new_empty(B, H, M), self.h.new_empty((K + 1) * B * H * M)
        w_in, _, weights, _ = self._pointers(self.mats)
        g_in, g_b_in, g_weights, g_biases = self._pointers(grads)
        rk_fused._checked(rk_fused.library().pnu_node_backward(
            int(self.h.dtype == torch.float64), self.dims, self.sizes, self.dts.data_ptr(), self.a, self.b,
            self.solver.substeps, self.obs_dim, g_hidden.data_ptr() if g_hidden is not None else None,
            g_mean.data_ptr() if g_mean is not None else None, self.bad.data_ptr(),
            gs.data_ptr(), self.x.data_ptr() if self.x is not None else None,
            w_in, weights, Y.data_ptr(), rk_fused._ptrs(acts), grad_h.data_ptr(), g_in, g_b_in, g_weights, g_biases))
        grads = [g if g.shape == v.shape else g.sum_to_size(v.shape) for g, v in zip(grads, self.values)]
        if not need_h0:
            return None, grads
        if self.h0_shared:
            return grad_h.sum((0, 2)), grads
        g_h0 = grad_h.transpose(-1, -2).reshape(self.batch + (H,))
        return g_h0.sum_to_size(self.h0_padded).reshape(self.h0.shape), grads


class _FusedNODESolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, solve, h0, *params):
        hidden, mean, bad = solve.forward(save=True)
        ctx.solve = solve
        ctx.mark_non_differentiable(bad)
        ctx.set_materialize_grads(False)
        return hidden, mean, bad

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_hidden, g_mean, _):
        if g_hidden is None and g_mean is None:
            return (None,) * (2 + len(ctx.solve.values))
        g_h0, grads = ctx.solve.backward(g_hidden, g_mean, ctx.needs_input_grad[1])
        return (None, g_h0, *(g if need else None for g, need in zip(grads, ctx.needs_input_grad[2:])))


def fused_node_solve(R, params, h0, t, interp, batch, solver, obs_dim):
    """``(hidden, mean, bad)``: the states ``batch + (T, H)`` at the times ``t`` (diverged members zero), their
    first ``obs_dim`` components and the boolean ``batch`` of diverged members (non-finite or above
    ``solver.max_abs``), by one compiled solve that is one node of the autograd graph; ``None`` where this does not
    apply (module docstring) and the general path must run.

    :param BatchedMLP R: the vector field (a ``tanh`` MLP).
    :param dict params: R's weights with leading batch dims.
    :param torch.Tensor h0: the initial state, broadcastable to ``batch + (H,)``.
    :param torch.Tensor t: shared times ``(T,)``.
    :param Interpolator interp: the inputs, or ``None``.
    :param torch.Size batch: the ensemble's batch shape.
    :param ODESolver solver: the solver's options.
    :param int obs_dim: the observed components.

    Example::

        >>> from pyro_node_uq.nn import BatchedMLP
        >>> from pyro_node_uq.distributions import ODESolver
        >>> R = BatchedMLP("R", (2, 8, 2))
        >>> params = {k: v.expand((4, 1) + v.shape) for k, v in R.init_params().items()}  # 4 particles
        >>> out = fused_node_solve(R, params, torch.ones(2), torch.linspace(0, 1, 5), None, torch.Size([4, 3]),
        ...                        ODESolver(), obs_dim=1)
        >>> out is None or [v.shape for v in out] == [(4, 3, 5, 2), (4, 3, 5, 1), (4, 3)]
        True
    """
    if not isinstance(R, BatchedMLP) or t.dim() != 1 or not len(batch) or torch.jit.is_tracing():
        return None  # another field object (a mechanism with a network) runs the general path
    if interp is not None and (interp.x.requires_grad or interp.times.requires_grad):
        return None
    if select(solver, R, times_grad=t.requires_grad) != "discrete_adjoint":
        return None
    values = [params[k] for k in R.param_shapes()]
    if not rk_fused.usable(t, h0, *values) or (interp is not None and not rk_fused.usable(t, interp.x)):
        return None
    solve = _Solve(R, params, h0, t, interp, batch, solver, obs_dim)
    if torch.is_grad_enabled() and (h0.requires_grad or any(v.requires_grad for v in values)):
        return _FusedNODESolve.apply(solve, h0, *values)
    return solve.forward(save=False)
