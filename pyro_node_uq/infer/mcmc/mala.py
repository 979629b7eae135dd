"""Metropolis-adjusted (MALA) and unadjusted (ULA) Langevin transitions, as an explicit-state kernel.

For P chains in the flat unconstrained space, potential ``U = -log p``, drift ``g`` (an estimate of ``grad log
p``), preconditioner ``m`` (a covariance: diagonal variances ``(D,)``, or a ``(D, D)`` matrix ``C = L L^T``) and
step size ``eps``:

    z' = z + eps^2 / 2 * m * g(z) + eps * sqrt(m) * xi,        xi ~ Normal(0, I)      (diagonal m)
    z' = z + eps^2 / 2 * C g(z) + eps * L xi                                           (matrix C)
    log alpha = U(z) - U(z') + log q(z | z') - log q(z' | z)    (accept with probability min(1, alpha): MALA)

(one leapfrog step of HMC with inverse mass matrix m or C is the same move.)

Without an acceptance draw (ULA) every finite move is taken.  A proposal that is not finite, whose potential or
drift is not finite, or whose energy rises by more than ``max_energy_error`` is a divergence and is never taken.
:func:`init` and :func:`step` are pure: the noise comes in, the new state and an info tuple go out; the loop,
step-size adaptation and bookkeeping belong to the caller (:class:`~pyro_node_uq.infer.LangevinKernel`).
"""
import math
from typing import NamedTuple

import torch

__all__ = ["MALAInfo", "MALAState", "init", "step"]


class MALAState(NamedTuple):
    z: torch.Tensor  #: points ``(P, D)``
    potential: torch.Tensor | None  #: ``U(z)`` ``(P,)``, or ``None`` when the drift needs no potential (ULA)
    drift: torch.Tensor  #: ``g(z)`` ``(P, D)``


class MALAInfo(NamedTuple):
    accept_prob: torch.Tensor  #: ``min(1, alpha)`` ``(P,)`` (for ULA: 1 for finite moves, 0 for divergences)
    accepted: torch.Tensor  #: boolean ``(P,)``
    divergent: torch.Tensor  #: boolean ``(P,)``


def init(z, evaluate):
    """The state at points ``z`` ``(P, D)``; ``evaluate(z) -> (U or None, g)``."""
    U, g = evaluate(z)
    return MALAState(z, U, g)


def _preconditioner(m):
    """``(v -> m v, xi -> sqrt(m) xi, v -> v^T m^-1 v)`` on rows ``(P, D)`` for variances ``(D,)`` or a covariance
    matrix ``(D, D)`` (its Cholesky factor as the square root)."""
    if m.dim() == 1:
        return (lambda v: m * v), (lambda xi: m.sqrt() * xi), (lambda v: (v ** 2 / m).sum(-1))
    L = torch.linalg.cholesky(m)
    return ((lambda v: v @ m), (lambda xi: xi @ L.T),
            (lambda v: torch.linalg.solve_triangular(L, v.T, upper=False).pow(2).sum(0)))


def propose(state, xi, *, step_size, variances, evaluate, max_energy_error=1000.0):
    """The Langevin proposal from ``state`` and its log acceptance ratio.

    :returns: ``(proposed MALAState, log_alpha or None, divergent)``.
    """
    z, eps = state.z, step_size
    mul, sqrt_mul, quad = _preconditioner(variances)
    z_new = z + 0.5 * eps ** 2 * mul(state.drift) + eps * sqrt_mul(xi)
    finite = torch.isfinite(z_new).all(-1)
    U_new, g_new = evaluate(torch.where(finite.unsqueeze(-1), z_new, z))  # never feed NaN/inf to the model
    finite = finite & torch.isfinite(g_new).all(-1)
    if U_new is None:
        return MALAState(z_new, None, g_new), None, ~finite
    finite = finite & torch.isfinite(U_new)
    back = z - z_new - 0.5 * eps ** 2 * mul(g_new)
    log_q_back = -0.5 * quad(back) / eps ** 2
    log_alpha = state.potential - U_new + log_q_back + 0.5 * (xi ** 2).sum(-1)
    log_alpha = torch.where(finite, log_alpha.nan_to_num(-math.inf), torch.full_like(log_alpha, -math.inf))
    exploding = (U_new - state.potential) > max_energy_error
    return MALAState(z_new, U_new, g_new), log_alpha, ~finite | exploding


def step(state, xi, u=None, *, step_size, variances, evaluate, max_energy_error=1000.0):
    """One transition of every chain.

    :param MALAState state: the current state.
    :param torch.Tensor xi: standard normal ``(P, D)``.
    :param torch.Tensor u: uniform ``(P,)`` acceptance draws (MALA), or ``None`` (ULA).
    :param float step_size: ``eps``.
    :param torch.Tensor variances: the preconditioner: variances ``(D,)`` or a covariance matrix ``(D, D)``.
    :param evaluate: ``z -> (U or None, g)``.
    :returns: ``(MALAState, MALAInfo)``.
    """
    new, log_alpha, divergent = propose(state, xi, step_size=step_size, variances=variances, evaluate=evaluate,
                                        max_energy_error=max_energy_error)
    if log_alpha is not None:
        accept_prob = log_alpha.exp().clamp(max=1.0)
    else:
        accept_prob = (~divergent).to(state.z.dtype)
    accepted = (u < accept_prob) & ~divergent if u is not None else ~divergent
    keep = accepted.unsqueeze(-1)
    potential = None if new.potential is None else torch.where(accepted, new.potential, state.potential)
    out = MALAState(torch.where(keep, new.z, state.z), potential, torch.where(keep, new.drift, state.drift))
    return out, MALAInfo(accept_prob, accepted, divergent)
