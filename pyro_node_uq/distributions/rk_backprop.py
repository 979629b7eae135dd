"""Exact reverse-mode gradient of an explicit Runge-Kutta solve of a tanh MLP field, without the autograd tape.

At small ensembles the cost of ``log p + grad`` through a fixed-step solve is Python dispatch and autograd
bookkeeping: ~25 tiny ops per step forward and about twice as many autograd nodes backward.  This module runs
the forward pass with no tape (saving only the stage states and activations) and writes the backward pass by
hand: the discrete adjoint of the Runge-Kutta scheme (the exact gradient of the computed solution, not the
continuous adjoint ODE).  With ``Y_i = h + dt sum_j a_ij k_j``, ``k_i = f(Y_i)``, ``h' = h + dt sum_i b_i k_i``
and ``lam = dL/dh'``, going back through a step::

    g_i  = dt b_i lam + dt sum_{l > i} a_li gY_l        (gradient of k_i, stages in reverse)
    gY_i = J_f(Y_i)^T g_i                               (one vector-Jacobian product of the MLP)
    lam <- lam + sum_i gY_i

The weight gradients of all steps and stages are gathered at the end in one batched matrix product per layer.
Layout and shapes are those of :mod:`~pyro_node_uq.distributions.fixed_grid`: states ``(B, H, M)``, the
first layer's input term ``u`` ``(K, S, B, n1, M)``, weights ``(B, out, in)``, biases ``(B, out, 1)``.  Only a
``tanh`` field without output activation is handled here (the default); other fields use autograd.
"""
import torch

__all__ = ["rk_solve"]


def _field(y, u, weights, biases, saved):
    """``k = f(y)``; appends the activations of every hidden layer to ``saved``."""
    z = torch.baddbmm(u, weights[0], y)
    for w, bias in zip(weights[1:], biases):
        a = torch.tanh(z)
        saved.append(a)
        z = torch.baddbmm(bias, w, a)
    return z


def _outer_sum(g, v):
    """``sum_s g[s] @ v[s]^T`` over the leading dim of ``(N, B, o, M)`` and ``(N, B, i, M)``: ``(B, o, i)``."""
    N, B = g.shape[:2]
    return torch.bmm(g.flatten(0, 1), v.flatten(0, 1).transpose(-1, -2)).reshape(N, B, g.shape[2], v.shape[2]).sum(0)


class _RKSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, u, coef, a, b, *wb):
        n = len(wb) // 2 + 1
        weights, biases = wb[:n], wb[n:]
        ys, acts, out = [], [], []
        for u_k, dts in zip(u.unbind(0), coef):
            uk = u_k.unbind()
            ks, pos = [], len(b)
            for i, row in enumerate(a):
                y = h
                for j in range(len(row)):
                    y = torch.add(y, ks[j], alpha=dts[pos + j])
                pos += len(row)
                ys.append(y)
                ks.append(_field(y, uk[i], weights, biases, acts))
            for j, kj in enumerate(ks):
                if b[j] != 0.0:
                    h = torch.add(h, kj, alpha=dts[j])
            out.append(h)
        ctx.a, ctx.b, ctx.n, ctx.u_shape = a, b, n, u.shape
        ctx.coef = coef
        ctx.save_for_backward(*wb)
        ctx.ys, ctx.acts = ys, acts
        return torch.stack(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_states):
        wb, coef = ctx.saved_tensors, ctx.coef
        a, b, n = ctx.a, ctx.b, ctx.n
        weights, biases = wb[:n], wb[n:]
        wT = [w.transpose(-1, -2).contiguous() for w in weights]
        K, S, L = g_states.shape[0], len(a), n - 1
        offsets = [len(b) + sum(len(r) for r in a[:i]) for i in range(S)]
        lam = torch.zeros_like(g_states[0])
        g_first = [None] * (K * S)  # gradient of the first layer's pre-activation, per step and stage
        g_layers = [[None] * (K * S) for _ in range(L)]  # gradient of each later layer's output
        ys, acts = ctx.ys, ctx.acts
        for k in range(K - 1, -1, -1):
            lam = lam + g_states[k]
            dts = coef[k]
            gys = [None] * S
            for i in range(S - 1, -1, -1):
                g = torch.mul(lam, dts[i]) if b[i] != 0.0 else None
                for l in range(i + 1, S):
                    if len(a[l]) > i and a[l][i] != 0.0:
                        c = dts[offsets[l] + i]
                        g = torch.mul(gys[l], c) if g is None else torch.add(g, gys[l], alpha=c)
                idx = k * S + i
                for layer in range(L, 0, -1):  # back through tanh layers
                    g_layers[layer - 1][idx] = g
                    act = acts[idx * L + layer - 1]
                    g = torch.ops.aten.tanh_backward(torch.bmm(wT[layer], g), act)
                g_first[idx] = g
                gys[i] = torch.bmm(wT[0], g)
            for gy in gys:
                lam = lam + gy
        g_u = torch.stack(g_first)  # (K * S, B, n1, M)
        grads_w = [_outer_sum(g_u, torch.stack(ys))]
        grads_b = []
        for layer in range(1, n):
            g_out = torch.stack(g_layers[layer - 1])
            grads_w.append(_outer_sum(g_out, torch.stack(acts[layer - 1::L])))
            grads_b.append(g_out.sum((0, -1)).unsqueeze(-1))
        g_u = g_u.reshape((K, S) + g_u.shape[1:])
        if g_u.shape[-1] != ctx.u_shape[-1]:  # an input term shared by the M columns (no inputs: the bias)
            g_u = g_u.sum(-1, keepdim=True)
        return (lam, g_u, None, None, None, *grads_w, *grads_b)


def rk_solve(h, u, coef, weights, biases, a, b):
    """States after each step ``(K, B, H, M)`` of the explicit RK method ``(a, b)``, with a hand-written backward.

    :param torch.Tensor h: initial states ``(B, H, M)``.
    :param torch.Tensor u: the first layer's input term at every stage ``(K, S, B, n1, M)`` (may be expanded).
    :param list coef: per step, its width times ``b`` then times the rows of ``a`` (Python floats, no gradient).
    :param list weights: ``(B, out, in)`` per layer (the first one acting on the state only).
    :param list biases: ``(B, out, 1)`` of the layers after the first.
    """
    return _RKSolve.apply(h, u, coef, a, b, *weights, *biases)
