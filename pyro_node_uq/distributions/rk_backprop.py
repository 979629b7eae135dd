"""An explicit Runge-Kutta solve of a tanh MLP field in few torch calls, with its exact gradient written by hand.

At small ensembles the cost of ``log p + grad`` through a fixed-step solve is Python dispatch, not arithmetic:
every torch call costs 1-3 us whatever its size, and so does every view made from Python.  This module counts
both.  Per RK stage the forward pass makes four calls: the stage input ``Y_i = h + dt sum_j a_ij k_j`` as ONE
matrix product of a constant coefficient row (scaled by the step width) with the buffer of the step's stage
values, the first layer, ``tanh`` in place, and the last layer written straight into that buffer; the next state
is one more product.  R's last bias is a row of that buffer, weighed with the coefficients' sums, so the last
layer needs no bias term.  Buffers and their views are made once per solve; the step loops themselves are in
:mod:`~pyro_node_uq.distributions.rk_loops` (run by TorchScript where it is available).

The backward pass is the discrete adjoint of the Runge-Kutta scheme (the exact gradient of the computed
solution, not the continuous adjoint ODE).  With ``lam = dL/dh'`` it goes back through a step as::

    g_i  = dt b_i lam + dt sum_{l > i} a_li gY_l        (gradient of k_i, stages in reverse)
    gY_i = J_f(Y_i)^T g_i                               (one vector-Jacobian product of the MLP)
    lam <- lam + sum_i gY_i

where the first line is initialised for all stages by one outer product, ``gY_i`` reaches the earlier stages
by one rank-1 update per stage and ``lam`` by one product per step.  The weight gradients of all steps and
stages (the input weights ``W_x`` and first bias included) are gathered at the end in one matrix product per layer
from buffers the backward loop writes in place (small ensembles), or added stage by stage while each stage's
values are in cache (large ensembles, above :data:`_GATHER_BUDGET` elements).  Layout and shapes are those of :mod:`~pyro_node_uq.distributions.fixed_grid`: states
``(B, H, M)``, stage inputs ``x`` ``(K, S, B, D, M)``, weights ``(B, out, in)``, biases ``(B, out, 1)``.  Only a
``tanh`` field without output activation is handled here (the default); other fields use autograd.
"""
import functools

import torch

from . import rk_fused
from .rk_loops import backward_steps, forward_steps, loop

__all__ = ["rk_solve", "rk_steps"]


def _tableau(dt, a, b):
    """Constant coefficient columns over the stage buffer's rows ``(k_0, ..., k_{S-1}, bias)``, to be scaled by
    each step's width: the stage inputs' ``a_i`` as rows ``(1, S + 1)`` (and columns for the backward) and the
    update's ``b`` ``(1, S + 1)``; plus the widths as Python floats.  The bias row gets the row sums."""
    return (*_coefficients(tuple(map(tuple, a)), tuple(b), dt.dtype, dt.device), dt.tolist())


@functools.lru_cache(maxsize=32)
def _coefficients(a, b, dtype, device):
    """:func:`_tableau`'s constant tensors, made once per method, dtype and device (read-only; normal tensors even
    when first asked for in inference mode)."""
    S = len(b)
    rows = [list(row) + [0.0] * (S - len(row)) for row in a]
    with torch.inference_mode(False):
        A = torch.tensor([r + [sum(r)] for r in rows], dtype=dtype, device=device)  # (S, S + 1)
        Bv = torch.tensor([list(b) + [sum(b)]], dtype=dtype, device=device)  # (1, S + 1)
        return list(A[:, None, :].unbind(0)), list(A[:, :, None].unbind(0)), Bv


# elements of one buffer of per-stage gradients ``(K S, B, n, M)`` (4 MB in float32); beyond it the weight
# gradients are added stage by stage, while the stage's values are still in cache, instead of gathered from buffers
# at the end (chemical, one core: gathered is 1.3x faster at P = 1 and 1.1x at P = 8, equal at P = 16-32, 1.3x
# slower at P = 64)
_GATHER_BUDGET = 2 ** 20


def _stage_terms(x, w_in, b_in, stream):
    """The first layer's input term ``W_x x + b`` of every stage, as the step loop takes it: ``(us, xs)`` with
    ``us`` ``(K S, B, n1, M)``, or with ``stream`` (large ensembles, where all the terms at once would be as large
    as the activations) ``us`` None and ``xs`` the stage inputs ``(K S, B, D, M)``, from which the loop forms each
    term in place; both None without inputs (the term is the bias)."""
    if x is None:
        return None, None
    if stream:
        return None, x.flatten(0, 1)
    u = torch.addcmul(b_in, w_in, x) if x.shape[-2] == 1 else torch.matmul(w_in, x).add_(b_in)
    return u.flatten(0, 1), None


def _forward(h, terms, w_in, b_in, K, tab, weights, biases, save):
    """States and stage inputs ``Yh`` ``(K + 1, S, B H M)`` (``Yh[k, 0]``: the state ``h_k``), and the hidden
    activations of every stage per layer (when ``save``: buffers ``(K S, B, n, M)``, stages in step order).

    The work is done in per-step buffers whose views are made once (a view costs as much as a small op): ``X``
    holds the step's state and stage inputs, ``kbuf`` its stage values and, as its last row, the last layer's
    bias, which every combination weighs with the sum of its coefficients (exactly ``sum_j c_j (k_j + bias)``),
    so the last layer is a plain product.  Saved activations are written straight into their buffers; the loop
    is :func:`~pyro_node_uq.distributions.rk_loops.forward_steps`."""
    rows_a, _, Bv, dts = tab
    S = len(rows_a)
    B, H, M = h.shape
    n = B * H * M
    Yh = h.new_empty(K + 1, S, n)
    X = h.new_empty(S, n)
    X[0] = h.reshape(n)
    X2, X3 = list(X[:, None].unbind(0)), list(X.view(S, B, H, M).unbind(0))
    kbuf = h.new_zeros(S + 1, n)  # the step's stage values without the last bias, then that bias
    k3 = list(kbuf.view(S + 1, B, H, M).unbind(0))
    L = len(weights) - 1  # hidden (tanh) layers
    if L:
        k3[S].copy_(biases[-1].expand(B, H, M))
    acts = [h.new_empty(K * S, B, w.shape[-2], M) for w in weights[:L]] if save else []
    loop(forward_steps)(X2[0], X, X2, X3, kbuf, k3, Yh, rows_a, Bv, dts, *terms, w_in, b_in, list(weights),
                        list(biases), acts)
    Yh[K, 0] = X[0]
    return Yh, acts


def _outer_sum(g, v):
    """``sum_s g_s v_s^T`` over the stages and columns of per-stage values ``g`` ``(KS, B, o, M)`` and ``v``
    ``(KS, B, i, M)``: ``(B, o, i)``.  With one batch member, ONE product over all stages and columns side by side
    (after two small copies); with more, one batched product of the ``KS B`` blocks and a sum (laying out the
    columns of many members would copy the whole buffers)."""
    KS, B, o, M = g.shape
    if B == 1:
        return torch.mm(g[:, 0].transpose(0, 1).reshape(o, KS * M), v[:, 0].permute(0, 2, 1).reshape(KS * M, -1))[None]
    return torch.bmm(g.reshape(KS * B, o, M), v.reshape(KS * B, -1, M).mT).view(KS, B, o, -1).sum(0)


class _RKSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, x, w_in, b_in, dt, a, b, stream, *wb):
        n = len(wb) // 2 + 1
        weights, biases = wb[:n], wb[n:]
        tab = _tableau(dt, a, b)
        K = dt.shape[0]
        terms = _stage_terms(x, w_in, b_in, stream)
        Yh, acts = _forward(h, terms, w_in, b_in, K, tab, weights, biases, save=True)
        ctx.n, ctx.Yh, ctx.acts, ctx.tab, ctx.x, ctx.w_in = n, Yh, acts, tab, x, w_in
        ctx.save_for_backward(*wb)
        return Yh[:, 0].reshape((-1,) + h.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_states):
        wb, n, Yh, acts, x = ctx.saved_tensors, ctx.n, ctx.Yh, ctx.acts, ctx.x
        _, cols_a, Bv, dts = ctx.tab
        weights = wb[:n]
        wT = [w.transpose(-1, -2).contiguous() for w in weights]
        K1, S, N = Yh.shape
        K, L = K1 - 1, n - 1
        B, H, M = g_states.shape[1:]
        lam = g_states.new_zeros(1, N)  # gradient of the current state
        G = g_states.new_empty(S + 1, N)  # gradients of the step's stage values and its bias row
        gY = g_states.new_empty(S, N)  # the stages' vector-Jacobian products
        G_hist = g_states.new_empty(K, S + 1, N)
        big = K * S * B * weights[0].shape[-2] * M > _GATHER_BUDGET and not ctx.needs_input_grad[1]
        grads = (_Accumulated if big else _Gathered)(weights, acts, Yh, x, ctx.w_in, (B, H, M))
        loop(backward_steps)(lam, G, list(G.view(S + 1, B, H, M).unbind(0)), gY, list(gY[:, None].unbind(0)),
                             list(gY.view(S, B, H, M).unbind(0)), G_hist, g_states.reshape(K1, 1, N), Bv.t(),
                             cols_a, g_states.new_ones(1, S), dts, wT, acts, grads.g_z, *grads.accumulators())
        grad_h = (lam + g_states[0].reshape(1, N)).view(B, H, M)
        g_k = G_hist[:, :S].reshape(K * S, B, H, M)  # gradient of every stage value k_i
        grads_w, grads_b, grad_w_in, grad_b_in, g_first = grads.result(g_k)
        if L:
            grads_b.append(G_hist[:, S].view(K, B, H, M).sum((0, -1)).unsqueeze(-1))  # the last bias: its row
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = torch.matmul(ctx.w_in.mT, g_first).view(K, S, B, -1, M)
        return (grad_h, grad_x, grad_w_in, grad_b_in, None, None, None, None, *grads_w, *grads_b)


class _Gathered:
    """Weight gradients gathered at the end, one product per layer over all stages, from buffers of the hidden
    layers' pre-activation gradients ``(K S, B, n, M)`` that the backward loop writes in place (``g_z``)."""

    def __init__(self, weights, acts, Yh, x, w_in, shape):
        self.acts, self.Yh, self.x, self.shape = acts, Yh, x, shape
        self.g_z = [torch.empty_like(a) for a in acts]  # written by the backward loop

    def accumulators(self):
        return False, [], [], self.Yh, None, None  # nothing added stage by stage

    def result(self, g_k):
        """``(weight grads, hidden bias grads, W_x grad, first bias grad, first layer's output grads)``."""
        (B, H, M), L = self.shape, len(self.acts)
        KS = g_k.shape[0]
        g_first = self.g_z[0] if L else g_k  # gradient of the first layer's output, (K S, B, n1, M)
        grads_w = [_outer_sum(g_first, self.Yh[:-1].view(KS, B, H, M))]
        grads_b = []
        for layer in range(1, L + 1):
            g_out = self.g_z[layer] if layer < L else g_k
            grads_w.append(_outer_sum(g_out, self.acts[layer - 1]))
            if layer < L:
                grads_b.append(g_out.sum((0, -1)).unsqueeze(-1))
        grad_w_in = _outer_sum(g_first, self.x.reshape(KS, B, -1, M)) if self.x is not None else None
        return grads_w, grads_b, grad_w_in, g_first.sum((0, -1)).unsqueeze(-1), g_first


class _Accumulated:
    """Weight gradients added stage by stage by the backward loop (large ensembles, where buffers of the
    gradients would double the memory of the activations): each hidden layer's gradient goes to one scratch
    tensor (``g_z``) that the loop adds into the accumulators before the next stage."""

    def __init__(self, weights, acts, Yh, x, w_in, shape):
        B, H, M = shape
        KS = (Yh.shape[0] - 1) * Yh.shape[1]
        L = len(acts)
        self.Y = Yh[:-1].view(KS, B, H, M)
        self.x = x.flatten(0, 1) if x is not None else None
        self.g_w = [torch.zeros_like(w) for w in weights]
        self.g_w_in = torch.zeros_like(w_in) if x is not None else None
        self.sums = [Yh.new_zeros(B, w.shape[-2], M) for w in weights[:max(L, 1)]]  # first, hidden outputs
        self.g_z = [Yh.new_empty(B, w.shape[-2], M) for w in weights[:L]]  # one stage's, reused

    def accumulators(self):
        return True, self.g_w, self.sums, self.Y, self.x, self.g_w_in

    def result(self, g_k):
        grads_b = [x.sum(-1, keepdim=True) for x in self.sums[1:]]
        return self.g_w, grads_b, self.g_w_in, self.sums[0].sum(-1, keepdim=True), None


def rk_solve(h, x, w_in, b_in, dt, weights, biases, a, b, stream=False, check=None):
    """States after each step, ``(K + 1, B, H, M)`` (the first is ``h``), of the explicit RK method ``(a, b)``,
    with the hand-written backward.

    :param torch.Tensor h: initial states ``(B, H, M)``, contiguous.
    :param torch.Tensor x: the inputs at every stage ``(K, S, B, D, M)``, contiguous, or ``None`` (no inputs).
    :param torch.Tensor w_in: the first layer's input weights ``(B, n1, D)``.
    :param torch.Tensor b_in: the first layer's bias ``(B, n1, 1)``.
    :param torch.Tensor dt: the step widths ``(K,)`` (no gradient).
    :param list weights: ``(B, out, in)`` per layer (the first one acting on the state only).
    :param list biases: ``(B, out, 1)`` of the layers after the first.
    :param a: the Butcher matrix's rows below the diagonal (Python floats).
    :param b: the Butcher weights (Python floats).
    :param bool stream: compute the input term ``W_x x + b`` stage by stage (large ensembles), not all at once.
    :param check: a :class:`~pyro_node_uq.distributions.rk_fused.StepCheck` for the compiled solve to run (left
        unfilled by the other paths).

    CPU tensors go to the compiled solve of :mod:`~pyro_node_uq.distributions.rk_fused` when it is available
    (same values and gradients, one call per direction).
    """
    if rk_fused.usable(h, x, w_in, *weights):
        return rk_fused.fused_solve(h, x, w_in, b_in, dt, weights, biases, a, b, stream, check)
    return _RKSolve.apply(h, x, w_in, b_in, dt, a, b, stream, *weights, *biases)


def rk_steps(h, x, w_in, b_in, dt, weights, biases, a, b, stream=False, check=None):
    """The same solve without a gradient: states ``(K + 1, B, H, M)`` (arguments as :func:`rk_solve`)."""
    if rk_fused.usable(h, x, w_in, *weights):
        return rk_fused.fused_steps(h, x, w_in, b_in, dt, weights, biases, a, b, stream, check)
    with torch.no_grad():
        K = dt.shape[0]
        terms = _stage_terms(x, w_in, b_in, stream)
        Yh = _forward(h, terms, w_in, b_in, K, _tableau(dt, a, b), weights, biases, save=False)[0]
        return Yh[:, 0].reshape((-1,) + h.shape)
