"""An equal-weight mixture of M Gaussian reference laws ``r = (1/M) sum_j Normal(m_j, S_j)`` for the Langevin chain
of :class:`~pyro_node_uq.infer.AutoLangevinMixture`, one component per basin of the posterior.

The chain's particles carry their component in the second-to-last dim: states are ``(..., M, D)``, and
component ``j``'s particles move under the OU kernel of ``Normal(m_j, S_j)`` (which keeps that component
invariant).  So the per-component operations the chain and the drifts need (``S_j v``, ``S_j^{-1} v``,
``v^T S_j^{-1} v``, a draw ``L_j xi``, the marginal std) act along that dim, as :mod:`.reference`'s single laws
do on one component; :meth:`MixtureReference.log_prob` is the mixture's density at points of any batch shape.

    diagonal   S_j = diag(s_j^2)
    full       S_j = L_j L_j^T,  L_j = diag(s_j) T_j  (T_j unit lower triangular)
"""
import math
from typing import NamedTuple

import pyro.distributions as dist
import torch

__all__ = ["MixtureReference"]


class MixtureReference(NamedTuple):
    """``(1/M) sum_j Normal(loc[j], S_j)`` with ``S_j = diag(scale[j]^2)`` (``tril=None``) or ``tril[j] tril[j]^T``.

    :ivar torch.Tensor loc: component means ``(M, D)``.
    :ivar torch.Tensor scale: ``(M, D)``: the diagonal stds (``tril=None``) or the marginal stds of ``tril``.
    :ivar torch.Tensor tril: lower-triangular factors ``(M, D, D)``, or ``None`` for diagonal components.

    Example::

        >>> import torch
        >>> ref = MixtureReference(torch.tensor([[-3.0], [3.0]]), torch.ones(2, 1))
        >>> z = torch.tensor([[3.0]])
        >>> expected = torch.distributions.Normal(3.0, 1.0).log_prob(z).sum(-1) - math.log(2)  # the far one ~ 0
        >>> bool(torch.allclose(ref.log_prob(z), expected))
        True
        >>> ref.noise(torch.zeros(5, 2, 1)).shape  # particles (5, M, D)
        torch.Size([5, 2, 1])
    """

    loc: torch.Tensor
    scale: torch.Tensor
    tril: torch.Tensor | None = None

    @classmethod
    def from_scale(cls, loc, scale, scale_tril=None):
        """Components ``Normal(loc[j], L_j L_j^T)`` with ``L_j = diag(scale[j]) scale_tril[j]`` (``scale_tril``
        unit lower triangular ``(M, D, D)``), or diagonal ones for ``scale_tril=None``."""
        if scale_tril is None:
            return cls(loc, scale)
        tril = scale.unsqueeze(-1) * scale_tril
        return cls(loc, tril.pow(2).sum(-1).sqrt(), tril)

    @property
    def num_components(self):
        return self.loc.shape[0]

    @property
    def noise_dim(self):
        return self.loc.shape[-1]

    def marginal_std(self):
        """``sqrt(diag S_j)`` ``(M, D)``."""
        return self.scale

    def apply(self, v):
        """``S_j v`` for ``v`` ``(..., M, D)``."""
        if self.tril is None:
            return self.scale.pow(2) * v
        return torch.einsum("mij,...mj->...mi", self.tril, torch.einsum("mji,...mj->...mi", self.tril, v))

    def _whiten(self, v):
        """``L_j^{-1} v`` for ``v`` ``(..., M, D)``, as ``(M, D, N)`` columns."""
        M, D = self.loc.shape
        cols = v.reshape(-1, M, D).permute(1, 2, 0)
        return torch.linalg.solve_triangular(self.tril, cols, upper=False)

    def _unwhiten_shape(self, cols, like):
        return cols.permute(2, 0, 1).reshape(like.shape)

    def solve(self, v):
        """``S_j^{-1} v`` for ``v`` ``(..., M, D)``."""
        if self.tril is None:
            return v / self.scale.pow(2)
        x = torch.linalg.solve_triangular(self.tril.mT, self._whiten(v), upper=True)
        return self._unwhiten_shape(x, v)

    def mahalanobis(self, v):
        """``v^T S_j^{-1} v`` over the last dim of ``v`` ``(..., M, D)``."""
        if self.tril is None:
            return (v / self.scale).pow(2).sum(-1)
        return self._whiten(v).pow(2).sum(1).T.reshape(v.shape[:-1])

    def noise(self, xi):
        """``L_j xi`` for standard normal ``xi`` ``(..., M, D)``: draws with covariance ``S_j``."""
        if self.tril is None:
            return self.scale * xi
        return torch.einsum("mij,...mj->...mi", self.tril, xi)

    def component_log_prob(self, z):
        """``log Normal(z | m_j, S_j)`` for every component: ``z`` ``(..., D)`` -> ``(..., M)``."""
        z = z.unsqueeze(-2)
        if self.tril is None:
            return dist.Normal(self.loc, self.scale).log_prob(z).sum(-1)
        return dist.MultivariateNormal(self.loc, scale_tril=self.tril).log_prob(z)

    def log_prob(self, z):
        """The mixture's log density at ``z`` ``(..., D)``: ``logsumexp_j log Normal(z | m_j, S_j) - log M``."""
        return torch.logsumexp(self.component_log_prob(z), -1) - math.log(self.num_components)
