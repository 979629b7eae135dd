"""An explicit Runge-Kutta solve of a tanh MLP field in few torch calls, with its exact gradient written by hand.

At small ensembles the cost of ``log p + grad`` through a fixed-step solve is Python dispatch, not arithmetic:
every torch call costs 1-3 us whatever its size, and so does every view made from Python.  This module counts
both.  Per RK stage the forward pass makes four calls: the stage input ``Y_i = h + dt sum_j a_ij k_j`` as ONE
matrix product of a constant coefficient row (scaled by the step width) with the buffer of the step's stage
values, the first layer, ``tanh`` in place, and the last layer written straight into that buffer; the next state
is one more product.  R's last bias is a row of that buffer, weighed with the coefficients' sums, so the last
layer needs no bias term.  Buffers and their views are made once per solve; activations are kept as a list.

The backward pass is the discrete adjoint of the Runge-Kutta scheme (the exact gradient of the computed
solution, not the continuous adjoint ODE).  With ``lam = dL/dh'`` it goes back through a step as::

    g_i  = dt b_i lam + dt sum_{l > i} a_li gY_l        (gradient of k_i, stages in reverse)
    gY_i = J_f(Y_i)^T g_i                               (one vector-Jacobian product of the MLP)
    lam <- lam + sum_i gY_i

where the first line is initialised for all stages by one outer product, ``gY_i`` reaches the earlier stages
by one rank-1 update per stage and ``lam`` by one product per step.  The weight gradients of all steps and
stages (the input weights ``W_x`` and first bias included) are gathered at the end in one batched matrix product
per layer.  Layout and shapes are those of :mod:`~pyro_node_uq.distributions.fixed_grid`: states
``(B, H, M)``, stage inputs ``x`` ``(K, S, B, D, M)``, weights ``(B, out, in)``, biases ``(B, out, 1)``.  Only a
``tanh`` field without output activation is handled here (the default); other fields use autograd.
"""
import torch

__all__ = ["rk_solve", "rk_steps"]


def _tableau(dt, a, b):
    """Constant coefficient columns over the stage buffer's rows ``(k_0, ..., k_{S-1}, bias)``, to be scaled by
    each step's width: the stage inputs' ``a_i`` as rows ``(1, S + 1)`` (and columns for the backward) and the
    update's ``b`` ``(1, S + 1)``; plus the widths as Python floats.  The bias row gets the row sums."""
    S = len(b)
    rows = [list(row) + [0.0] * (S - len(row)) for row in a]
    A = dt.new_tensor([r + [sum(r)] for r in rows])  # (S, S + 1)
    Bv = dt.new_tensor([list(b) + [sum(b)]])  # (1, S + 1)
    return A[:, None, :].unbind(0), A[:, :, None].unbind(0), Bv, dt.tolist()


def _skip(x):
    pass


class _StageTerms:
    """The first layer's input term computed stage by stage, for ensembles where all of them at once would be
    as large as the solve's activations."""

    def __init__(self, x, w_in, b_in):
        self.x, self.w_in, self.b_in = x.flatten(0, 1), w_in, b_in

    def __getitem__(self, idx):
        if self.x.shape[-2] == 1:  # one input: an outer product, cheaper than B tiny matrix products
            return torch.addcmul(self.b_in, self.w_in, self.x[idx])
        return torch.baddbmm(self.b_in, self.w_in, self.x[idx])


def _input_terms(x, w_in, b_in, K, S, stream):
    """The first layer's input term ``W_x x + b`` of every stage: a list of ``K S`` tensors ``(B, n1, M)`` (or
    ``(B, n1, 1)``, the bias alone, without inputs), or with ``stream`` computed when asked for."""
    if x is None:
        return [b_in] * (K * S)
    if stream:
        return _StageTerms(x, w_in, b_in)
    u = torch.addcmul(b_in, w_in, x) if x.shape[-2] == 1 else torch.matmul(w_in, x).add_(b_in)
    return u.flatten(0, 1).unbind(0)


def _forward(h, us, K, tab, weights, biases, save):
    """States and stage inputs ``Yh`` ``(K + 1, S, B H M)`` (``Yh[k, 0]``: the state ``h_k``), and the hidden
    activations of every stage per layer (lists in step order, when ``save``).

    The work is done in per-step buffers whose views are made once (a view costs as much as a small op): ``X``
    holds the step's state and stage inputs, ``kbuf`` its stage values and, as its last row, the last layer's
    bias, which every combination weighs with the sum of its coefficients (exactly ``sum_j c_j (k_j + bias)``),
    so the last layer is a plain product."""
    rows_a, _, Bv, dts = tab
    S = len(rows_a)
    B, H, M = h.shape
    n = B * H * M
    Yh = h.new_empty(K + 1, S, n)
    X = h.new_empty(S, n)
    X[0] = h.reshape(n)
    X2, X3 = X[:, None].unbind(0), X.view(S, B, H, M).unbind(0)
    kbuf = h.new_zeros(S + 1, n)  # the step's stage values without the last bias, then that bias
    k3 = kbuf.view(S + 1, B, H, M).unbind(0)
    L = len(weights) - 1  # hidden (tanh) layers
    if L:
        k3[S].copy_(biases[-1].expand(B, H, M))
    acts = [[] for _ in range(L)]
    appends = [x.append if save else _skip for x in acts]
    W0, last = weights[0], L - 1
    x0, Yk = X2[0], Yh.unbind(0)
    for k in range(K):
        dt, base = dts[k], k * S
        for i in range(S):
            if i:
                torch.addmm(x0, rows_a[i], kbuf, alpha=dt, out=X2[i])
            if L == 0:
                torch.baddbmm(us[base + i], W0, X3[i], out=k3[i])
                continue
            z = torch.baddbmm(us[base + i], W0, X3[i]).tanh_()
            for layer in range(L):
                appends[layer](z)
                if layer == last:
                    torch.bmm(weights[layer + 1], z, out=k3[i])
                else:
                    z = torch.baddbmm(biases[layer], weights[layer + 1], z).tanh_()
        Yk[k].copy_(X)
        x0.addmm_(Bv, kbuf, alpha=dt)  # the next state
    Yh[K, 0] = X[0]
    return Yh, acts


def _columns(x):
    """Per-stage values as ``(B, r, N M)``, stages and columns side by side, from a list of ``N`` ``(B, r, M)``
    or a tensor ``(N, B, r, M)``: a weight gradient is then ONE product per batch member contracting over all
    steps, stages and columns (not ``N B`` tiny products, which cost far more per element)."""
    if isinstance(x, list):
        return torch.stack(x, 2).flatten(2)
    return x.permute(1, 2, 0, 3).flatten(2)


def _outer_sum(g, v):
    """``g @ v^T`` of ``(B, o, N M)`` and ``(B, i, N M)``: ``(B, o, i)``."""
    return torch.bmm(g, v.transpose(-1, -2))


class _RKSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, x, w_in, b_in, dt, a, b, stream, *wb):
        n = len(wb) // 2 + 1
        weights, biases = wb[:n], wb[n:]
        tab = _tableau(dt, a, b)
        K = dt.shape[0]
        Yh, acts = _forward(h, _input_terms(x, w_in, b_in, K, len(b), stream), K, tab, weights, biases, save=True)
        ctx.n, ctx.Yh, ctx.acts, ctx.tab, ctx.x, ctx.w_in, ctx.stream = n, Yh, acts, tab, x, w_in, stream
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
        tanh_backward = torch.ops.aten.tanh_backward.default
        lam = g_states.new_zeros(1, N)  # gradient of the current state
        G = g_states.new_empty(S + 1, N)  # gradients of the step's stage values and its bias row
        G3 = G.view(S + 1, B, H, M).unbind(0)
        gY = g_states.new_empty(S, N)  # the stages' vector-Jacobian products
        gY2, gY3 = gY[:, None].unbind(0), gY.view(S, B, H, M).unbind(0)
        ones = g_states.new_ones(1, S)
        Bt = Bv.t()
        G_hist = g_states.new_empty(K, S + 1, N)
        gs = g_states.reshape(K1, 1, N).unbind(0)
        G_k = G_hist.unbind(0)
        # large ensembles add each stage's weight gradients at once (stacking them all would copy the activations)
        stream = ctx.stream and not ctx.needs_input_grad[1]
        grads = (_Accumulated if stream else _Gathered)(weights, acts, Yh, x, ctx.w_in, (B, H, M))
        for k in range(K - 1, -1, -1):
            dt, base = dts[k], k * S
            lam.add_(gs[k + 1])  # the observation's gradient
            G.addmm_(Bt, lam, beta=0, alpha=dt)  # dt b_i lam for every stage (and the bias row)
            for i in range(S - 1, -1, -1):
                g = g_k = G3[i]
                g_z = [None] * L
                for layer in range(L - 1, -1, -1):  # back through the tanh layers
                    g = g_z[layer] = tanh_backward(torch.bmm(wT[layer + 1], g), acts[layer][base + i])
                torch.bmm(wT[0], g, out=gY3[i])
                grads.stage(base + i, g_k, g_z, g)
                if i:
                    G.addmm_(cols_a[i], gY2[i], alpha=dt)  # to the earlier stages and the bias row
            lam.addmm_(ones, gY)  # the update's identity term and every stage input's
            G_k[k].copy_(G)
        grad_h = (lam + gs[0]).view(B, H, M)
        grads_w, grads_b, grad_w_in, grad_b_in, g_first = grads.result(G_hist[:, :S], K, S)
        if L:
            grads_b.append(G_hist[:, S].view(K, B, H, M).sum((0, -1)).unsqueeze(-1))  # the last bias: its row
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = torch.bmm(ctx.w_in.transpose(-1, -2), g_first).unflatten(-1, (K, S, M)).permute(2, 3, 0, 1, 4)
        return (grad_h, grad_x, grad_w_in, grad_b_in, None, None, None, None, *grads_w, *grads_b)


class _Gathered:
    """Weight gradients from every stage's gradients gathered at the end, one product per layer (small
    ensembles, where a call per stage would cost more than the copies)."""

    def __init__(self, weights, acts, Yh, x, w_in, shape):
        self.acts, self.Yh, self.x, self.shape = acts, Yh, x, shape
        self.g_z = [[] for _ in acts]  # gradient of each hidden pre-activation, steps and stages in reverse

    def stage(self, idx, g_k, g_z, g_first):
        for lst, g in zip(self.g_z, g_z):
            lst.append(g)

    def result(self, G_stages, K, S):
        """``(weight grads, hidden bias grads, W_x grad, first bias grad, first layer's output grads)``."""
        (B, H, M), L = self.shape, len(self.acts)
        g_z = [_columns(x[::-1]) for x in self.g_z]  # (B, n, K S M), in step order
        g_k = _columns(G_stages.reshape(K * S, B, H, M))  # gradient of every stage value k_i
        g_first = g_z[0] if L else g_k  # gradient of the first layer's output
        grads_w = [_outer_sum(g_first, _columns(self.Yh[:K].view(K * S, B, H, M)))]
        grads_b = []
        for layer in range(1, L + 1):
            g_out = g_z[layer] if layer < L else g_k
            grads_w.append(_outer_sum(g_out, _columns(self.acts[layer - 1])))
            if layer < L:
                grads_b.append(g_out.sum(-1, keepdim=True))
        grad_w_in = _outer_sum(g_first, _columns(self.x.flatten(0, 1))) if self.x is not None else None
        return grads_w, grads_b, grad_w_in, g_first.sum(-1, keepdim=True), g_first


class _Accumulated:
    """Weight gradients added stage by stage (large ensembles: gathering would copy all the activations)."""

    def __init__(self, weights, acts, Yh, x, w_in, shape):
        B, H, M = shape
        self.acts, self.L = acts, len(acts)
        self.Y = Yh[:-1].view(-1, B, H, M).unbind(0)
        self.x = x.flatten(0, 1).unbind(0) if x is not None else None
        self.g_w = [torch.zeros_like(w) for w in weights]
        self.g_w_in = torch.zeros_like(w_in) if x is not None else None
        self.sums = [Yh.new_zeros(B, w.shape[-2], M) for w in weights[:max(self.L, 1)]]  # first, hidden outputs

    def stage(self, idx, g_k, g_z, g_first):
        acts, L = self.acts, self.L
        if L:
            self.g_w[L].baddbmm_(g_k, acts[L - 1][idx].mT)
        for layer in range(1, L):
            self.g_w[layer].baddbmm_(g_z[layer], acts[layer - 1][idx].mT)
            self.sums[layer].add_(g_z[layer])
        self.g_w[0].baddbmm_(g_first, self.Y[idx].mT)
        self.sums[0].add_(g_first)
        if self.x is not None:
            self.g_w_in.baddbmm_(g_first, self.x[idx].mT)

    def result(self, G_stages, K, S):
        grads_b = [x.sum(-1, keepdim=True) for x in self.sums[1:]]
        return self.g_w, grads_b, self.g_w_in, self.sums[0].sum(-1, keepdim=True), None


def rk_solve(h, x, w_in, b_in, dt, weights, biases, a, b, stream=False):
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
    """
    return _RKSolve.apply(h, x, w_in, b_in, dt, a, b, stream, *weights, *biases)


def rk_steps(h, x, w_in, b_in, dt, weights, biases, a, b, stream=False):
    """The same solve without a gradient: states ``(K + 1, B, H, M)`` (arguments as :func:`rk_solve`)."""
    with torch.no_grad():
        K = dt.shape[0]
        us = _input_terms(x, w_in, b_in, K, len(b), stream)
        return _forward(h, us, K, _tableau(dt, a, b), weights, biases, save=False)[0][:, 0].reshape((-1,) + h.shape)
