"""The two step loops of the hand-written Runge-Kutta solve (:mod:`~pyro_node_uq.distributions.rk_backprop`),
compiled with TorchScript where it is available.

Each loop makes a handful of small torch calls per stage (four forward, four backward); at small ensembles their
cost is the interpreter's, not the arithmetic's: about 2 us per call from Python.  Run by TorchScript the same
calls cost about a third of that (chemical, P = 1, one core: the forward loop 1.07 -> 0.71 ms, the backward
loop 1.97 -> 0.67 ms), with no compile of the whole solve (``torch.compile`` of the unrolled loops takes
minutes).  The functions below are plain Python that TorchScript accepts; :func:`loop` scripts one after a few
uses (``script_after`` of :data:`~pyro_node_uq.distributions.solve_cache.CACHE`, which holds the result; about
50 ms with TorchScript's first runs, once per process) and falls back to the Python function, with one warning,
where scripting is unavailable or fails (TorchScript is deprecated in recent PyTorch; the fallback computes the same
values with the same calls).  Set :data:`USE_TORCHSCRIPT` to ``False``, or the environment variable
``PYRO_NODE_UQ_TORCHSCRIPT=0``, to always run the Python loops.

Layouts are those of :mod:`~pyro_node_uq.distributions.rk_backprop`: the lists hold views of its buffers, made
once per solve, so that the loops index and never slice.
"""
import os
import warnings

import torch

from . import solve_cache

__all__ = ["USE_TORCHSCRIPT", "backward_steps", "forward_steps", "loop"]

#: run the step loops through TorchScript (where it is available)
USE_TORCHSCRIPT = os.environ.get("PYRO_NODE_UQ_TORCHSCRIPT", "1") != "0"


def forward_steps(x0: torch.Tensor, X: torch.Tensor, X2: list[torch.Tensor], X3: list[torch.Tensor],
                  kbuf: torch.Tensor, k3: list[torch.Tensor], Yh: torch.Tensor, rows_a: list[torch.Tensor],
                  Bv: torch.Tensor, dts: list[float], us: torch.Tensor | None, xs: torch.Tensor | None,
                  w_in: torch.Tensor, b_in: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor],
                  acts: list[torch.Tensor]) -> None:
    """The forward steps, written into the buffers.

    Per stage ``i`` of step ``k`` (``idx = k S + i``): the stage input ``Y_i = h + dt sum_j a_ij k_j`` (row ``i`` of
    ``X``, one product of the coefficient row with the stage buffer ``kbuf``), the first layer with its input term
    (``us[idx]`` precomputed; or formed here from the stage inputs ``xs[idx]``; or, with neither, the bias
    ``b_in``), ``tanh`` in place (into ``acts[layer][idx]`` when ``acts`` is non-empty: the saved activations), the
    hidden layers, and the last layer into row ``i`` of ``kbuf``.  After the stages ``X`` is copied to ``Yh[k]``
    and ``x0`` (row 0) steps on."""
    S = len(X2)
    L = len(weights) - 1
    save = len(acts) > 0
    for k in range(len(dts)):
        dt = dts[k]
        base = k * S
        for i in range(S):
            idx = base + i
            if i > 0:
                torch.addmm(x0, rows_a[i], kbuf, alpha=dt, out=X2[i])
            out = k3[i] if L == 0 else (acts[0][idx] if save else torch.empty(0, dtype=X.dtype, device=X.device))
            if us is not None:
                z = torch.baddbmm(us[idx], weights[0], X3[i], out=out)
            elif xs is not None:
                z = torch.baddbmm(b_in, w_in, xs[idx], out=out).baddbmm_(weights[0], X3[i])
            else:
                z = torch.baddbmm(b_in, weights[0], X3[i], out=out)
            if L == 0:
                continue
            z = z.tanh_()
            for layer in range(L - 1):
                out = acts[layer + 1][idx] if save else torch.empty(0, dtype=X.dtype, device=X.device)
                z = torch.baddbmm(biases[layer], weights[layer + 1], z, out=out).tanh_()
            torch.bmm(weights[L], z, out=k3[i])
        Yh[k].copy_(X)
        x0.addmm_(Bv, kbuf, alpha=dt)  # the next state


def backward_steps(lam: torch.Tensor, G: torch.Tensor, G3: list[torch.Tensor], gY: torch.Tensor,
                   gY2: list[torch.Tensor], gY3: list[torch.Tensor], G_hist: torch.Tensor, gs: torch.Tensor,
                   Bt: torch.Tensor, cols_a: list[torch.Tensor], ones: torch.Tensor, dts: list[float],
                   wT: list[torch.Tensor], acts: list[torch.Tensor], g_z: list[torch.Tensor], accumulate: bool,
                   g_w: list[torch.Tensor], sums: list[torch.Tensor], Y: torch.Tensor, xs: torch.Tensor | None,
                   g_w_in: torch.Tensor | None) -> None:
    """The discrete adjoint, steps and stages in reverse (see :mod:`~pyro_node_uq.distributions.rk_backprop`).

    Per step: ``lam`` takes the observation's gradient ``gs[k + 1]``, ``G`` (the gradients of the step's stage
    values and of its bias row) starts as ``dt b lam``; per stage in reverse, the vector-Jacobian product of the
    MLP writes each hidden layer's pre-activation gradient into ``g_z[layer][idx]`` (or, with ``accumulate``, into
    the scratch ``g_z[layer]``) and the stage input's into row ``i`` of ``gY``, which reaches the earlier stages'
    rows of ``G``; then ``lam`` takes every stage's and ``G`` is kept in ``G_hist[k]``.  With ``accumulate``
    (large ensembles) each stage's weight gradients are added here, into ``g_w`` (per layer), ``sums`` (the first
    and hidden layers' bias gradients per column) and ``g_w_in`` (the input weights, with ``xs`` the stage
    inputs), from the stage inputs ``Y`` ``(K S, B, H, M)`` and the activations ``acts``."""
    S = len(gY3)
    K = len(dts)
    L = len(wT) - 1
    for kk in range(K):
        k = K - 1 - kk
        dt = dts[k]
        base = k * S
        lam.add_(gs[k + 1])  # the observation's gradient
        G.addmm_(Bt, lam, beta=0.0, alpha=dt)  # dt b_i lam for every stage (and the bias row)
        for ii in range(S):
            i = S - 1 - ii
            idx = base + i
            g_k = G3[i]
            g = g_k
            for ll in range(L):  # back through the tanh layers
                layer = L - 1 - ll
                out = g_z[layer] if accumulate else g_z[layer][idx]
                g = torch.ops.aten.tanh_backward(torch.bmm(wT[layer + 1], g), acts[layer][idx], grad_input=out)
            torch.bmm(wT[0], g, out=gY3[i])
            if accumulate:
                if L > 0:
                    g_w[L].baddbmm_(g_k, acts[L - 1][idx].transpose(-1, -2))
                for layer in range(1, L):
                    g_w[layer].baddbmm_(g_z[layer], acts[layer - 1][idx].transpose(-1, -2))
                    sums[layer].add_(g_z[layer])
                g_w[0].baddbmm_(g, Y[idx].transpose(-1, -2))
                sums[0].add_(g)
                if xs is not None and g_w_in is not None:
                    g_w_in.baddbmm_(g, xs[idx].transpose(-1, -2))
            if i > 0:
                G.addmm_(cols_a[i], gY2[i], alpha=dt)  # to the earlier stages and the bias row
        lam.addmm_(ones, gY)  # the update's identity term and every stage input's
        G_hist[k].copy_(G)


def _script(fn):
    """``torch.jit.script(fn)``, or ``fn`` itself (warned once, since the cache holds the result) on failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's own deprecation notice: the fallback covers it
            return torch.jit.script(fn)
    except Exception as e:  # noqa: BLE001 - any failure: the Python loop computes the same
        warnings.warn(f"rk_loops: TorchScript could not compile {fn.__name__} ({type(e).__name__}: {e}); the "
                      "hand-written solve runs its Python loop (slower at small ensembles)", RuntimeWarning)
        return fn


def loop(fn):
    """``fn`` (:func:`forward_steps` or :func:`backward_steps`) scripted by TorchScript (once per process, after a
    few uses, held by :data:`~pyro_node_uq.distributions.solve_cache.CACHE`: a one-off solve never pays the ~50 ms
    of scripting and TorchScript's first, profiling runs), or ``fn`` itself when :data:`USE_TORCHSCRIPT` is off or
    scripting fails (warned once)."""
    if not USE_TORCHSCRIPT:
        return fn
    return solve_cache.CACHE.script(fn, _script)
