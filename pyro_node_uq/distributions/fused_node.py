"""The NODE's whole fixed-step solve as ONE node of the autograd graph: the compiled solve of
:mod:`~pyro_node_uq.distributions.rk_fused` with the weights' layout, the initial state, the divergence flags and the
outputs' layout handled inside.

At a few particles the cost of ``log p + grad`` is not the solve but the graph around it: the first layer's weight
sliced into its state and input halves, every weight and the initial state reshaped into the solver's layout, the
states transposed back, the observed components sliced out, diverged members masked.  Each of those is a node whose
backward pass allocates and copies (a slice's backward fills a zero tensor of its whole input), and together they
cost several times the compiled solve.  :func:`fused_node_solve` runs them inside one ``torch.autograd.Function``,
whose backward maps the solve's gradients back by the inverse steps (transposes, sums over broadcast dimensions).
The arithmetic is the compiled solve's: states and gradients equal those of the general path of
:func:`~pyro_node_uq.distributions.node_solve.solve_node` to rounding.

It applies to the common solve: shared times ``(T,)``, no doses and no ``t0``, the observed components the first
``obs_dim`` states (no observation network), the ``"discrete_adjoint"`` path with the compiled library, inputs and
times without gradient; :func:`fused_node_solve` returns ``None`` for anything else, and the general path runs.
"""
import torch

from . import rk_fused
from .fixed_grid import _check_tables, _Field, _grid, _tableau_of
from .solve_path import select
from .step_check import warn_if_unstable

__all__ = ["fused_node_solve"]


def _param_grad(g, value, batch, shared, bias):
    """The gradient of the weight ``value`` (``wbatch + event``) from that of its matrix ``(B, r, c)`` in the solve's
    layout: the inverse of :meth:`~pyro_node_uq.distributions.fixed_grid._Field.bmm` (a reshape, sums over the
    dimensions it broadcast)."""
    shape = value.shape + ((1,) if bias else ())
    padded = (1,) * (len(batch) + 2 - len(shape)) + tuple(shape)
    g = g.reshape((batch[:-1] if shared else batch) + g.shape[-2:])
    if shared:
        g = g.unsqueeze(len(batch) - 1)
    if g.shape != padded:
        g = g.sum_to_size(padded)
    return g.reshape(value.shape)


class _Solve:
    """One solve's inputs in the compiled solve's layout, its forward pass, and the map of its gradients back."""

    def __init__(self, R, params, h0, t, interp, batch, solver, obs_dim):
        self.R, self.names, self.batch, self.solver, self.obs_dim = R, list(R.param_shapes()), batch, solver, obs_dim
        self.shapes = [params[k].shape for k in self.names]
        self.h0_shape, H = h0.shape, R.sizes[-1]
        self.field = field = _Field(R, params, batch)
        tab = _tableau_of(solver.method)
        self.times, self.dt, xs = _grid(field, interp, t, solver.method, solver.substeps, batch)
        self.h0_padded = (1,) * (len(batch) + 1 - h0.dim()) + tuple(h0.shape)
        h = field.columns(h0.reshape(self.h0_padded), batch).contiguous()  # (B, H, M)
        self.spec = rk_fused._Spec(h, xs, field.w_in, field.b_in, self.dt, field.weights, field.biases, tab.a, tab.b)
        self.check = None
        if solver.step_check and len(t) > 1:
            _, reuse, self.check_dts, widths, xs_check = _check_tables(field, interp, t, self.dt, solver.method,
                                                                        solver.substeps, batch)
            self.check = rk_fused.StepCheck(reuse, widths, xs_check, solver.substeps)
        self.t, self.H = t, H

    def forward(self, save):
        """``(hidden, mean, bad)``: the states ``batch + (T, H)`` (zero for diverged members), their first
        ``obs_dim`` components (a tensor of their own: a slice would be a node of the graph) and the boolean
        ``batch`` of diverged members; with ``save`` the saved values for :meth:`backward` are kept."""
        states, Y, acts = self.spec.forward(save)
        if self.check is not None:
            self.spec.check(states, self.check)
            if self.check.k is not None and self.check.k >= 0:
                warn_if_unstable(self.check.err, self.solver.method, self.check_dts[self.check.k, 0],
                                 self.t[self.check.k])
        self.saved = (Y, acts) if save else None
        sub = self.solver.substeps
        hs = states[::sub] if sub > 1 else states  # (T, B, H, M)
        B, _, M = self.spec.h.shape
        bad = ~(hs.abs().amax((0, 2)) <= self.solver.max_abs)  # NaN and inf included
        hidden = hs.permute(1, 3, 0, 2).reshape(self.batch + (hs.shape[0], self.H))
        self.bad = bad.reshape(self.batch)
        if self.bad.any():
            hidden = hidden.masked_fill(self.bad[..., None, None], 0.0)
        return hidden, hidden[..., :self.obs_dim].clone(), self.bad

    def backward(self, g_hidden, g_mean):
        """The gradients of ``h0`` and of each of R's weights (in :attr:`names` order) from those of the states
        and of the observed components (either may be ``None``)."""
        B, H, M = self.spec.h.shape
        if g_hidden is None:
            g_hidden = g_mean.new_zeros(g_mean.shape[:-1] + (H,))
            g_hidden[..., :self.obs_dim] = g_mean
        elif g_mean is not None:
            g_hidden = g_hidden.clone()
            g_hidden[..., :self.obs_dim] += g_mean
        if self.bad.any():
            g_hidden = g_hidden.masked_fill(self.bad[..., None, None], 0.0)
        T = g_hidden.shape[-2]
        g = g_hidden.reshape(B, M, T, H).permute(2, 0, 3, 1)  # (T, B, H, M)
        sub = self.solver.substeps
        if sub > 1:
            full = g.new_zeros(((T - 1) * sub + 1, B, H, M))
            full[::sub] = g
            g = full
        grad_h, _, grad_w_in, grad_b_in, grads_w, grads_b = self.spec.backward(g, *self.saved, False)
        field, batch = self.field, self.batch
        if grad_w_in is None:  # no inputs: the first weight has no input columns
            grad_w_in = grads_w[0].new_zeros(grads_w[0].shape[:-1] + (0,))
        mats = [torch.cat([grads_w[0], grad_w_in], -1), grad_b_in]
        for w, b in zip(grads_w[1:], grads_b):
            mats += [w, b]
        grads = [_param_grad(g, torch.empty(s, device="meta"), batch, field.shared, name.endswith("bias"))
                 for g, s, name in zip(mats, self.shapes, self.names)]
        g_h0 = grad_h.transpose(-1, -2).reshape(batch + (H,))
        if g_h0.shape != self.h0_padded:
            g_h0 = g_h0.sum_to_size(self.h0_padded)
        return g_h0.reshape(self.h0_shape), grads


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
            return (None,) * (2 + len(ctx.solve.names))
        g_h0, grads = ctx.solve.backward(g_hidden, g_mean)
        return (None, g_h0, *grads)


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
    if t.dim() != 1 or not len(batch) or torch.jit.is_tracing():
        return None
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
