"""Warm-up adaptation of a Langevin kernel, as an explicit-state algorithm: step size and diagonal preconditioner.

Step size: Nesterov dual averaging of ``H_t = target - alpha_t`` (Hoffman & Gelman's NUTS paper, section 3.2;
``t0 = 10, kappa = 0.75, gamma = 0.05``, proximal centre ``log(10 eps_0)``, the constants of Pyro's
:class:`~pyro.ops.dual_averaging.DualAveraging`)::

    gbar_t    = (1 - 1 / (t + t0)) gbar_{t-1} + H_t / (t + t0)
    log eps_t = mu - sqrt(t) / gamma * gbar_t                     (used during warm-up)
    xbar_t    = (1 - t^-kappa) xbar_{t-1} + t^-kappa log eps_t     (its average: the step size after warm-up)

Preconditioner: the chain's points are pooled over windows that double in length (Stan's schedule: a 15% start
buffer, a 10% end buffer in which only the step size moves); at the end of each window the variances become
the window's sample variances shrunk towards 1e-3 as Stan does, ``n / (n + 5) var + 1e-3 * 5 / (n + 5)``, and
dual averaging restarts around the current step size.  Every particle's point counts as a sample.  With a block
structure the preconditioner is a covariance matrix: dense blocks take the window's sample covariance (shrunk
towards 1e-3 times the identity), the rest its variances.

:func:`init` and :func:`update` are pure: the state goes in, a new state comes out; the kernel owns the loop.
"""
import math
from typing import NamedTuple

import torch

__all__ = ["AdaptationState", "DualAveraging", "Welford", "init", "update", "windows"]


class DualAveraging(NamedTuple):
    """State of dual averaging in the log step size."""

    prox_center: float  #: ``mu``
    t: int = 0
    g_avg: float = 0.0
    x: float = 0.0  #: the current iterate ``log eps_t``
    x_avg: float = 0.0  #: its weighted average


def dual_averaging(prox_center):
    """Fresh dual averaging around ``prox_center``."""
    return DualAveraging(float(prox_center), x=float(prox_center))


def dual_averaging_step(state, g, t0=10.0, kappa=0.75, gamma=0.05, max_x=None):
    """One update with the statistic ``g`` (here ``target - acceptance``); the iterate is kept at or below
    ``max_x`` when one is given (and averaged as kept)."""
    t = state.t + 1
    g_avg = (1 - 1 / (t + t0)) * state.g_avg + g / (t + t0)
    x = state.prox_center - math.sqrt(t) / gamma * g_avg
    if max_x is not None:
        x = min(x, max_x)
    weight = t ** (-kappa)
    return DualAveraging(state.prox_center, t, g_avg, x, (1 - weight) * state.x_avg + weight * x)


class Welford(NamedTuple):
    """Running mean and sum of squared deviations (Welford) of the rows seen so far."""

    count: int = 0
    mean: object = 0.0
    m2: object = 0.0


def welford_update(state, rows, dense=False):
    """Add the rows ``(P, D)`` of ``rows`` one at a time (``dense``: sums of cross products, for covariances)."""
    count, mean, m2 = state
    for row in rows:
        count += 1
        delta = row - mean
        mean = mean + delta / count
        m2 = m2 + (torch.outer(delta, row - mean) if dense else delta * (row - mean))
    return Welford(count, mean, m2)


def welford_variance(state):
    """Sample variances (or, after dense updates, the sample covariance matrix), shrunk towards ``1e-3`` (times
    the identity) with the weight of five pseudo-samples (Stan's regularisation)."""
    n = state.count
    if n < 2:
        raise RuntimeError("adaptation window: fewer than two samples to estimate variances")
    m2 = state.m2
    shrink = 1e-3 * (5.0 / (n + 5.0))
    if m2.dim() == 2:
        return (n / (n + 5.0)) * (m2 / (n - 1)) + shrink * torch.eye(m2.shape[0], dtype=m2.dtype, device=m2.device)
    return (n / (n + 5.0)) * (m2 / (n - 1)) + shrink


def windows(warmup_steps):
    """End steps (1-based) of the preconditioner windows: after a 15% start buffer, windows of doubling length
    (the first ``min(25, room / 3)``, at least 5), the last stretched to the 10% end buffer; none below 20 steps."""
    if warmup_steps < 20:
        return ()
    start, end_buffer = max(int(0.15 * warmup_steps), 1), max(int(0.1 * warmup_steps), 1)
    stop, size, ends = warmup_steps - end_buffer, max(min(25, (warmup_steps - start - end_buffer) // 3), 5), []
    while start < stop:
        nxt = start + size if 3 * size <= stop - start else stop
        ends.append(nxt)
        start, size = nxt, 2 * size
    return tuple(ends)


class AdaptationState(NamedTuple):
    step_size: float
    variances: torch.Tensor  #: the preconditioner: variances ``(D,)`` or a block-diagonal covariance ``(D, D)``
    dual: DualAveraging
    welford: Welford
    windows: tuple[int, ...]  #: window ends still ahead (empty when the variances are not adapted)
    blocks: torch.Tensor | None = None  #: boolean ``(D, D)``: the covariance entries adapted (``None``: diagonal)


def init(step_size, variances, warmup_steps, adapt_variances=True, blocks=None):
    """The state at the start of warm-up, from the initial step size and variances ``(D,)``.  With ``blocks`` (a
    boolean ``(D, D)`` mask with a true diagonal) the preconditioner is the covariance matrix ``diag(variances)``
    and each window end estimates the entries the mask selects (a block-diagonal covariance)."""
    ends = windows(warmup_steps) if adapt_variances else ()
    if blocks is not None:
        variances = torch.diag_embed(variances)
    return AdaptationState(float(step_size), variances, dual_averaging(math.log(10 * step_size)), Welford(), ends,
                           blocks)


def update(state, t, z, accept_prob, *, warmup_steps, target_accept_prob, adapt_step_size=True, max_growth=None):
    """The state after warm-up step ``t`` (1-based) with chain points ``z`` ``(P, D)`` and mean acceptance
    probability ``accept_prob``.  At ``t == warmup_steps`` the step size becomes the dual average.

    ``max_growth`` (``None``: no limit) bounds the warm-up step size to that multiple of the previous one: dual
    averaging's first iterates overshoot (its centre is ten times the initial step size), and one Langevin step
    that large can leave the region where the model's density is computed accurately."""
    step_size, variances, dual, welford, ends, blocks = state
    if ends:
        welford = welford_update(welford, z, dense=blocks is not None)
        if t == ends[0]:
            variances = welford_variance(welford)
            if blocks is not None:
                variances = torch.where(blocks, variances, torch.zeros_like(variances))
            ends, welford = ends[1:], Welford()
            if adapt_step_size:
                dual = dual_averaging(math.log(10 * step_size))
    if adapt_step_size:
        dual = dual_averaging_step(dual, target_accept_prob - accept_prob,
                                   max_x=None if max_growth is None else math.log(max_growth * step_size))
        step_size = math.exp(dual.x_avg if t == warmup_steps else dual.x)
    return AdaptationState(step_size, variances, dual, welford, ends, blocks)

