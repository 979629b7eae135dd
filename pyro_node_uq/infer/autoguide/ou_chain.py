"""The controlled Ornstein-Uhlenbeck chain of :class:`AutoLangevin`, as an explicit-state kernel.

With reference ``r = Normal(m, S)`` (``L L^T = S``), step size ``h`` (``a = exp(-h)``) and a drift term ``c``
(:mod:`.drift`):

    z_0     = m + L xi_0
    b_k     = (1 - a) c(z_k, k)                        (clipped to whitened size ``bound``; rejected if not finite)
    z_{k+1} = m + a (z_k - m) + b_k + sqrt(1 - a^2) L xi_{k+1}
    PKL    += 0.5 ||L^{-1} b_k||^2 / (1 - a^2)          (exact KL between the controlled and reference transitions)

:func:`init` and :func:`step` are pure: the noise ``xi`` comes in, the state and an info tuple go out, and the
loop belongs to the caller.  With ``b = 0`` the chain keeps ``r`` exactly at every step.
"""
from typing import NamedTuple

import torch

__all__ = ["ChainInfo", "ChainState", "coefficients", "init", "step"]


class ChainState(NamedTuple):
    z: torch.Tensor  #: chain states ``batch + (D,)``
    path_kl: torch.Tensor  #: accumulated path KL ``batch``


class ChainInfo(NamedTuple):
    clipped: torch.Tensor  #: members whose drift was clipped to ``bound`` (boolean ``batch``)
    rejected: torch.Tensor  #: members whose drift was not finite or not evaluable, set to zero (boolean ``batch``)
    path_kl: torch.Tensor  #: this step's path-KL increment ``batch``


def init(reference, xi):
    """``z_0 = m + L xi`` for standard normal ``xi`` ``batch + (reference.noise_dim,)``."""
    z = reference.loc + reference.noise(xi)
    return ChainState(z, z.new_zeros(z.shape[:-1]))


def coefficients(step_size):
    """``(a, 1 - a, 1 - a^2, sqrt(1 - a^2))`` with ``a = exp(-h)`` for a step size ``h`` (computed once per chain)."""
    one_minus_a2 = -torch.expm1(-2 * step_size)
    return torch.exp(-step_size), -torch.expm1(-step_size), one_minus_a2, one_minus_a2.sqrt()


def step(state, xi, *, k, num_steps, reference, drift, step_size, bound, coefs=None):
    """One controlled OU step.

    :param ChainState state: the current state.
    :param torch.Tensor xi: standard normal noise ``batch + (reference.noise_dim,)``.
    :param int k: the step index (``0 <= k < num_steps``).
    :param reference: a :mod:`.reference` object.
    :param drift: a :mod:`.drift` term.
    :param torch.Tensor step_size: ``h > 0`` (a tensor, so that it can be learned).
    :param float bound: the largest whitened drift size ``||L^{-1} b|| / sqrt(1 - a^2)`` per step.
    :param tuple coefs: :func:`coefficients` of ``step_size`` (computed here if not given).
    :returns: ``(ChainState, ChainInfo)``.
    """
    z, m = state.z, reference.loc
    a, one_minus_a, one_minus_a2, sigma = coefficients(step_size) if coefs is None else coefs
    c, ok = drift(z, k, num_steps, reference, bound / one_minus_a.detach())
    b = one_minus_a * c.expand(z.shape) if torch.is_tensor(c) else torch.zeros_like(z)
    mahal = reference.mahalanobis(b) / one_minus_a2
    finite = torch.isfinite(mahal)  # a non-finite entry of b makes its Mahalanobis size non-finite
    rejected = ~finite if ok is None else ~(finite & ok)
    clipped = mahal > bound ** 2
    # the common case (nothing rejected or clipped) skips the masking; a traced graph must keep it
    if torch.jit.is_tracing() or bool(rejected.any()) or bool(clipped.any()):
        b = torch.where(rejected.unsqueeze(-1), torch.zeros_like(b), b)
        mahal = torch.where(rejected, torch.zeros_like(mahal), mahal)
        clipped = mahal > bound ** 2
        b = b * torch.where(clipped, bound / mahal.clamp(min=1e-30).sqrt(), torch.ones_like(mahal)).unsqueeze(-1)
        mahal = torch.where(clipped, torch.full_like(mahal, bound ** 2), mahal)
    kl = 0.5 * mahal
    z = m + a * (z - m) + b + sigma * reference.noise(xi)
    return ChainState(z, state.path_kl + kl), ChainInfo(clipped, rejected, kl)
