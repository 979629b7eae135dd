"""Trajectory memory: LTAU's predicted error distributions averaged over each trajectory's recent past.

A NODE's error at time ``t`` is not a property of the state at ``t`` alone: it accumulates along the trajectory
(an early excursion from the training data leaves a lasting error).  With memory ``tau`` the distribution at
``(n, t_j)`` is the average of the distributions at ``(n, t_i)``, ``t_i <= t_j``, weighted by
``exp(-(t_j - t_i) / tau)`` (``tau = 0``: none; ``tau = inf``: the running mean since the start).  The mixtures
are combined by averaging their quantile functions (Vincentisation) on a fixed grid of levels, so the result is
again a mixture of equally weighted point masses; the exact means and the neighbour distances (the
out-of-domain score) are averaged with the same weights.
"""
import math

import torch

__all__ = ["memory_weights", "smooth_along_time"]

_LEVELS = 64  # quantile levels of the Vincentised distributions


def memory_weights(t, memory):
    """Row-normalised causal weights ``W[j, i] ∝ exp(-(t_j - t_i) / memory)`` for ``t_i <= t_j``, shape ``(T, T)``.

    :param torch.Tensor t: increasing times ``(T,)``.
    :param float memory: time constant ``tau >= 0`` (0: identity; ``inf``: running mean).
    """
    memory = float(memory)
    if not memory >= 0:
        raise ValueError(f"memory must be >= 0, got {memory}")
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() != 1 or (t.diff() <= 0).any():
        raise ValueError(f"times: expected increasing 1-D times, got shape {tuple(t.shape)}")
    lag = t[:, None] - t[None, :]
    if memory == 0:
        return torch.eye(len(t), dtype=torch.float64)
    decay = torch.ones_like(lag) if math.isinf(memory) else torch.exp(-lag.clamp(min=0) / memory)
    w = torch.where(lag >= 0, decay, torch.zeros_like(lag))
    return w / w.sum(-1, keepdim=True)


def smooth_along_time(quantiles, mean, distance, t, memory):
    """Average per-point quantile functions, means and distances over the trajectory's past.

    :param torch.Tensor quantiles: ``(..., T, Q)`` quantiles of each point at common levels.
    :param torch.Tensor mean: ``(..., T)`` exact means.
    :param torch.Tensor distance: ``(..., T)`` mean neighbour distances.
    :param t: times ``(T,)``; the time axis is the last batch axis.
    :param float memory: time constant (see :func:`memory_weights`).
    :returns: ``(quantiles, mean, distance)`` smoothed, same shapes.
    """
    w = memory_weights(t, memory)
    if quantiles.shape[-2] != len(w):
        raise ValueError(f"times: expected {quantiles.shape[-2]} times (the last batch axis), got {len(w)}")
    return (torch.einsum("ji,...iq->...jq", w, quantiles), torch.einsum("ji,...i->...j", w, mean),
            torch.einsum("ji,...i->...j", w, distance))
