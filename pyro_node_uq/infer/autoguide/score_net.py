"""Score hypernetworks s_theta(z, tau): the learned drift correction of :class:`AutoLangevin`.

Inputs are the whitened latent ``u = (z - m) / s`` (``m``, ``s``: the reference's loc and marginal std) and the
pseudo-time ``tau`` in [0, 1]; the output is in whitened units (the guide multiplies by ``s``).  Every network
starts at exactly zero output (zero-initialised last layers), so an untrained guide IS its Gaussian reference.
"""
import math

import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

__all__ = ["PerSiteScore", "ScoreMLP", "make_score_net"]


def _time_features(tau, batch_shape, num=4):
    """``(tau, sin(pi k tau), cos(pi k tau))`` features broadcast to ``batch_shape``."""
    tau = torch.as_tensor(tau)
    k = torch.arange(1, num + 1, dtype=tau.dtype, device=tau.device)
    feats = torch.cat([tau.reshape(1), torch.sin(math.pi * k * tau), torch.cos(math.pi * k * tau)])
    return feats.expand(batch_shape + feats.shape)


class ScoreMLP(PyroModule):
    """A time-conditioned MLP with a low-rank linear skip: ``out = (U V^T) u * g(tau) + MLP([u, phi(tau)])``.

    The linear skip represents Gaussian score corrections exactly; the MLP the rest.

    :param int dim: latent dimension D.
    :param int hidden: hidden width of the MLP.
    :param int depth: number of hidden layers.
    :param int skip_rank: rank of the linear skip (``min(dim, skip_rank)``; 0 disables it).
    """

    def __init__(self, dim, hidden=64, depth=2, skip_rank=32):
        super().__init__()
        self.dim, self.num_time = dim, 9
        layers, width = [], dim + self.num_time
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        last = nn.Linear(width, dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)
        rank = min(dim, skip_rank)
        self.skip_rank = rank
        if rank:
            self.skip_in = nn.Parameter(torch.randn(dim, rank) / math.sqrt(dim))
            self.skip_out = nn.Parameter(torch.zeros(dim, rank))
            self.skip_time = nn.Linear(self.num_time, rank)

    def weights(self):
        """The parameters as plain tensors, read once: every read of a Pyro module's parameter is a ``pyro.param``
        statement, so a chain of K steps reads them once (:meth:`chain_fn`) instead of K times."""
        linears = [layer for layer in self.mlp if isinstance(layer, nn.Linear)]
        w = {"layers": [(layer.weight, layer.bias) for layer in linears]}
        if self.skip_rank:
            w["skip"] = (self.skip_in, self.skip_out, self.skip_time.weight, self.skip_time.bias)
        return w

    def _time_terms(self, w, feats):
        """The time-dependent parts for features ``feats`` ``(..., num_time)``: the first layer's bias (its time
        columns folded in, so that phi(tau) is never broadcast over the batch) and the skip's gate."""
        W0, b0 = w["layers"][0]
        bias = b0 + feats @ W0[:, self.dim:].T
        gate = None
        if self.skip_rank:
            _, _, time_w, time_b = w["skip"]
            gate = 1 + F.linear(feats, time_w, time_b)
        return bias, gate

    def _evaluate(self, u, w, bias, gate):
        (W0, _), *rest = w["layers"]
        out = F.linear(u, W0[:, :self.dim], bias)
        for W, b in rest:
            out = F.linear(F.silu(out), W, b)
        if gate is not None:
            skip_in, skip_out, _, _ = w["skip"]
            out = out + ((u @ skip_in) * gate) @ skip_out.T
        return out

    def forward(self, u, tau):
        w = self.weights()
        return self._evaluate(u, w, *self._time_terms(w, _time_features(tau.to(u.dtype), torch.Size())))

    def chain_fn(self, num_steps, dtype, device):
        """``f(u, k)``: the net at ``tau_k = k / num_steps`` for a chain of ``num_steps`` steps, with the
        parameters read and the time terms of every step computed once."""
        w = self.weights()
        taus = torch.arange(num_steps, dtype=dtype, device=device) / num_steps
        feats = torch.stack([_time_features(t, torch.Size()) for t in taus])
        bias, gate = self._time_terms(w, feats)
        return lambda u, k: self._evaluate(u, w, bias[k], None if gate is None else gate[k])


class PerSiteScore(PyroModule):
    """A block-diagonal score net: one small :class:`ScoreMLP` per latent site, for large latent vectors.

    :param dict sizes: site name -> number of unconstrained coordinates (in the guide's latent order).
    """

    def __init__(self, sizes, hidden=32, depth=1, skip_rank=8):
        super().__init__()
        self.names = list(sizes)
        self.sizes = [int(s) for s in sizes.values()]
        self.nets = nn.ModuleList([ScoreMLP(s, hidden, depth, skip_rank) for s in self.sizes])

    def forward(self, u, tau):
        parts = torch.split(u, self.sizes, dim=-1)
        return torch.cat([net(p, tau) for net, p in zip(self.nets, parts)], -1)

    def chain_fn(self, num_steps, dtype, device):
        """``f(u, k)`` for a chain of ``num_steps`` steps (see :meth:`ScoreMLP.chain_fn`)."""
        fns = [net.chain_fn(num_steps, dtype, device) for net in self.nets]

        def f(u, k):
            return torch.cat([fn(p, k) for fn, p in zip(fns, torch.split(u, self.sizes, dim=-1))], -1)
        return f


def make_score_net(kind, dim, site_sizes, **kwargs):
    """Build the score net named ``kind`` (``"mlp"`` or ``"per_site"``), or return ``kind`` if it is a module."""
    if isinstance(kind, nn.Module):
        return kind
    if kind == "mlp":
        return ScoreMLP(dim, **kwargs)
    if kind == "per_site":
        return PerSiteScore(site_sizes, **kwargs)
    raise ValueError(f"score_net must be 'mlp', 'per_site' or an nn.Module, got {kind!r}")
