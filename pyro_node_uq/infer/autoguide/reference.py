"""Gaussian reference laws ``r = Normal(m, S)`` of the Langevin chain, as small immutable objects.

``DiagonalReference``: ``S = diag(s^2)``.  ``LowRankReference``: ``S = W W^T + diag(s^2)`` with ``W = diag(s) F``
(the factor relative to the scale, as Pyro's ``AutoLowRankMultivariateNormal``).  ``FullRankReference``:
``S = L L^T`` with ``L = diag(s) T`` and ``T`` unit lower triangular (as Pyro's ``AutoMultivariateNormal``).  Each
offers what the chain needs: ``S v``, ``S^{-1} v`` (Woodbury for the low-rank one), ``v^T S^{-1} v``, the marginal std
``sqrt(diag S)`` (the diagonal preconditioner), a draw ``L xi`` with ``L L^T = S`` from standard normal ``xi`` of size :attr:`noise_dim`, and the
distribution itself.  They hold tensors (the guide's parameters), so gradients flow through them.
"""
from typing import NamedTuple

import pyro.distributions as dist
import torch

__all__ = ["DiagonalReference", "FullRankReference", "LowRankReference"]


class DiagonalReference(NamedTuple):
    """``Normal(loc, diag(scale^2))``."""

    loc: torch.Tensor
    scale: torch.Tensor

    @property
    def noise_dim(self):
        return self.loc.shape[-1]

    def marginal_std(self):
        return self.scale

    def apply(self, v):
        """``S v``."""
        return self.scale.pow(2) * v

    def solve(self, v):
        """``S^{-1} v``."""
        return v / self.scale.pow(2)

    def mahalanobis(self, v):
        """``v^T S^{-1} v`` over the last dim."""
        return (v / self.scale).pow(2).sum(-1)

    def noise(self, xi):
        """``L xi`` for standard normal ``xi`` ``(..., noise_dim)``: a draw with covariance S."""
        return self.scale * xi

    def distribution(self):
        return dist.Normal(self.loc, self.scale).to_event(1)


class LowRankReference(NamedTuple):
    """``Normal(loc, W W^T + diag(scale^2))`` with ``W = diag(scale) cov_factor``."""

    loc: torch.Tensor
    scale: torch.Tensor
    cov_factor: torch.Tensor

    @property
    def factor(self):
        return self.scale.unsqueeze(-1) * self.cov_factor

    @property
    def noise_dim(self):
        return self.loc.shape[-1] + self.cov_factor.shape[-1]

    def marginal_std(self):
        return (self.scale.pow(2) + self.factor.pow(2).sum(-1)).sqrt()

    def apply(self, v):
        W = self.factor
        return self.scale.pow(2) * v + (v @ W) @ W.T

    def solve(self, v):
        W, dinv = self.factor, self.scale.pow(-2)
        out = dinv * v
        cap = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device) + (W.T * dinv) @ W
        return out - dinv * (W @ torch.linalg.solve(cap, (out @ W).unsqueeze(-1))).squeeze(-1)

    def mahalanobis(self, v):
        return (v * self.solve(v)).sum(-1).clamp(min=0)

    def noise(self, xi):
        D = self.loc.shape[-1]
        return self.scale * xi[..., :D] + xi[..., D:] @ self.factor.T

    def distribution(self):
        return dist.LowRankMultivariateNormal(self.loc, self.factor, self.scale.pow(2))


class FullRankReference(NamedTuple):
    """``Normal(loc, L L^T)`` with ``L = tril`` lower triangular (built from ``diag(s) T``, ``T`` unit lower
    triangular, by :meth:`from_scale`)."""

    loc: torch.Tensor
    tril: torch.Tensor

    @classmethod
    def from_scale(cls, loc, scale, scale_tril):
        return cls(loc, scale.unsqueeze(-1) * scale_tril)

    @property
    def noise_dim(self):
        return self.loc.shape[-1]

    def marginal_std(self):
        return self.tril.pow(2).sum(-1).sqrt()

    def apply(self, v):
        L = self.tril
        return (v @ L) @ L.T

    def _whiten(self, v):
        """``L^{-1} v`` for row vectors ``v`` ``(..., D)``, as ``(D, N)`` columns."""
        return torch.linalg.solve_triangular(self.tril, v.reshape(-1, v.shape[-1]).T, upper=False)

    def solve(self, v):
        x = torch.linalg.solve_triangular(self.tril.T, self._whiten(v), upper=True)
        return x.T.reshape(v.shape)

    def mahalanobis(self, v):
        return self._whiten(v).pow(2).sum(0).reshape(v.shape[:-1])

    def noise(self, xi):
        return xi @ self.tril.T

    def distribution(self):
        return dist.MultivariateNormal(self.loc, scale_tril=self.tril)
