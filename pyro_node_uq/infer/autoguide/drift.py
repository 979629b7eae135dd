"""Drift terms of the Langevin chain, composable: the learned score, the exact score, and their sum.

A term maps a chain state ``z`` ``(..., D)`` at step ``k`` of ``K`` to ``(c, ok)``, its share of ``S * score``
before the chain multiplies by ``(1 - a)`` (see :mod:`.ou_chain`); ``ok`` (``None`` or a boolean batch tensor)
marks members whose term could not be evaluated (their drift is rejected: zeroed and counted).

    learned   c = sqrt(diag S) * net((z - m) / sqrt(diag S), tau_k)       (no data-model evaluation)
    exact     c = lambda_k S (grad log p(x, z) - grad log r(z))           (one model gradient per step)
    sum       c = c_1 + c_2,  ok = ok_1 & ok_2
"""
import torch

from ..log_joint import value_and_grad
from .score_net import PerSiteScore, ScoreMLP

__all__ = ["DriftSum", "ExactDrift", "LearnedDrift"]


class LearnedDrift:
    """The score network's drift, preconditioned by the reference's marginal std (exactly S for a diagonal
    reference; a low-rank S would amplify it along its correlated directions by up to D and destabilise training).

    :param net: ``net(u, tau) -> (..., D)`` on whitened latents ``u``.
    """

    def __init__(self, net):
        self.net, self._std, self._fn = net, None, None

    def __call__(self, z, k, num_steps, reference, cap):
        # a drift object lives for one chain: the reference's std and the net's parameters are read once
        if self._std is None or self._std[0] is not reference:
            self._std = (reference, reference.marginal_std())
        if self._fn is None:
            if isinstance(self.net, (ScoreMLP, PerSiteScore)):
                self._fn = self.net.chain_fn(num_steps, z.dtype, z.device)
            else:
                self._fn = lambda u, j: self.net(u, torch.tensor(j / num_steps, dtype=z.dtype, device=z.device))
        std = self._std[1]
        return std * self._fn((z - reference.loc) / std, k), None


class ExactDrift:
    """The exact score's drift ``lambda_k S e`` with ``e = grad log p(x, z) - grad log r(z)``.

    :param log_density: ``f(z) -> (P,)``, the log joint of flat points ``z`` ``(P, D)`` (a
        :class:`~pyro_node_uq.infer.log_joint.LogJoint` behind a flattening adapter).
    :param torch.Tensor weights: ``lambda_k`` for ``k = 0..K-1``.

    The whitened size ``sqrt(e^T S e)`` of each member is capped at ``1e3 * cap`` before ``e`` meets any
    parameter (the chain's clip enforces the real bound): a NODE gradient can be finite yet so large that
    ``lambda S e`` overflows in float32, and an inf in the forward pass turns into ``0 * inf = NaN`` in the
    parameters' gradients even where ``torch.where`` discards it.
    """

    def __init__(self, log_density, weights):
        self.log_density, self.weights = log_density, weights

    def score(self, z):
        """``(grad_z log p(x, z), ok)`` at points ``z`` ``batch + (D,)``: zero gradient where ``ok`` is False."""
        _, grad, ok = value_and_grad(self.log_density, z.detach().reshape(-1, z.shape[-1]))
        return grad.reshape(z.shape), ok.reshape(z.shape[:-1])

    def direction(self, z, reference, cap):
        """``(e, ok)``: ``e`` detached and capped, zero where ``ok`` is False."""
        grad, ok = self.score(z)
        with torch.no_grad():
            e = grad + reference.solve(z - reference.loc)
            ok = ok & torch.isfinite(e).all(-1)
            e = torch.where(ok.unsqueeze(-1), e, torch.zeros_like(e))
            peak = e.abs().amax(-1, keepdim=True).clamp(min=torch.finfo(e.dtype).tiny)
            unit = e / peak  # entries in [-1, 1]: S unit cannot overflow
            size = peak.squeeze(-1) * (unit * reference.apply(unit)).sum(-1).clamp(min=0).sqrt()
            e = unit * torch.minimum(peak, peak * (1e3 * cap / size.clamp(min=1e-30)).unsqueeze(-1))
        return e, ok

    def __call__(self, z, k, num_steps, reference, cap):
        e, ok = self.direction(z, reference, cap)
        return self.weights[k] * reference.apply(e), ok


class DriftSum:
    """The sum of drift terms (e.g. learned + exact: the ``"hybrid"`` score)."""

    def __init__(self, *terms):
        self.terms = terms

    def __call__(self, z, k, num_steps, reference, cap):
        total, ok = 0.0, None
        for term in self.terms:
            c, term_ok = term(z, k, num_steps, reference, cap)
            total = total + c
            ok = term_ok if ok is None else (ok if term_ok is None else ok & term_ok)
        return total, ok
