"""Scores of predictive samples ``(S, N, T, D)`` on held-out trajectories: accuracy, NLL, CRPS, calibration.

Every score averages over the observed entries only (``mask``); samples are draws of the posterior predictive
(noisy ``obs``) unless said otherwise; the predictive NLL uses the noise-free means ``y_mean`` and the noise
model, so it is the exact log density of the posterior mixture, and so does the CRPS under Normal noise
(:func:`crps_normal_mixture`: the noise integrated in closed form, not sampled).
"""
import math

import torch

from ..validation import check_int

__all__ = [
    "LEVELS",
    "calibration_curve",
    "crps",
    "crps_normal_mixture",
    "energy_distance",
    "interval_coverage",
    "predictive_nll",
    "rmse",
    "score",
]

LEVELS = (0.5, 0.9, 0.95)


def _check(samples, y, mask, name="samples"):
    if samples.dim() < 2 or samples.shape[1:] != y.shape:
        raise ValueError(f"{name}: expected shape (S,) + y.shape = (S, {', '.join(map(str, y.shape))}), "
                         f"got {tuple(samples.shape)}")
    if mask is None:
        return torch.ones(y.shape, dtype=torch.bool, device=y.device)
    if mask.dim() == y.dim() - 1:
        mask = mask[..., None]
    return mask.expand(y.shape)


def _masked_mean(values, mask):
    values, mask = values.detach(), mask.detach()
    if not mask.any():
        raise ValueError("mask: no observed entries to score")
    return float(values[mask].mean())


def rmse(samples, y, mask=None):
    """Root mean squared error of the predictive mean (mean over samples) against ``y``."""
    mask = _check(samples, y, mask)
    return math.sqrt(_masked_mean((samples.mean(0) - y) ** 2, mask))


def predictive_nll(y_mean, y, scale, mask=None, noise="normal", df=4.0):
    """Negative log density of ``y`` under the mixture over posterior samples, per observed entry.

    ``-log (1/S) sum_s p(y | y_mean_s, scale_s)``, with ``p`` the Normal (or Student-t) noise model.

    :param torch.Tensor y_mean: noise-free predictive means ``(S, N, T, D)``.
    :param scale: noise std, a float or a tensor broadcastable to ``(S, N, T, D)`` (per-sample for a latent scale).
    """
    mask = _check(y_mean, y, mask, "y_mean")
    scale = torch.as_tensor(scale, dtype=y_mean.dtype, device=y_mean.device)
    if noise == "normal":
        lp = torch.distributions.Normal(y_mean, scale).log_prob(y)
    elif noise == "studentt":
        lp = torch.distributions.StudentT(df, y_mean, scale).log_prob(y)
    else:
        raise ValueError(f"noise must be 'normal' or 'studentt', got {noise!r}")
    lp = torch.logsumexp(lp, 0) - math.log(y_mean.shape[0])
    return -_masked_mean(lp, mask)


def crps(samples, y, mask=None):
    """Continuous ranked probability score, sample-based energy form with the unbiased pairwise term.

    ``CRPS = E|X - y| - 1/2 E|X - X'|``, where ``E|X - X'|`` averages over the ``S(S-1)`` distinct pairs
    (computed in ``O(S log S)`` from the sorted samples).
    """
    mask = _check(samples, y, mask)
    S = samples.shape[0]
    if S < 2:
        raise ValueError("crps: needs at least 2 samples")
    term1 = (samples - y).abs().mean(0)
    x = samples.sort(0).values
    weights = (2 * torch.arange(S, dtype=x.dtype, device=x.device) - S + 1).reshape((S,) + (1,) * y.dim())
    pair = 2 * (weights * x).sum(0) / (S * (S - 1))
    return _masked_mean(term1 - 0.5 * pair, mask)


def _abs_normal_mean(mu, var):
    """``E|X|`` for ``X ~ Normal(mu, var)``: ``2 s phi(mu / s) + mu (2 Phi(mu / s) - 1)``, ``s = sqrt(var)``."""
    s = var.sqrt()
    z = mu / s
    return 2 * s * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) + mu * torch.erf(z / math.sqrt(2))


def crps_normal_mixture(y_mean, y, scale, mask=None, num_shifts=None):
    """CRPS of the equal-weight mixture of Normals ``N(y_mean_s, scale_s^2)`` over the ``S`` posterior draws,
    integrated over the observation noise in closed form.

    ``CRPS = E|X - y| - 1/2 E|X - X'|`` with ``X, X'`` independent draws of the mixture: ``E|X - y|`` is the mean
    over the draws of ``E|X_s - y|``, ``E|X - X'|`` the mean over pairs of draws ``(s, s')`` of ``E|X_s - X_s'|``,
    each a closed form (``X_s - X_s'`` is Normal).  This scores the same predictive as :func:`predictive_nll` (the
    mixture over the draws) and as :func:`crps` does from noisy samples, without their noise draws, so its Monte
    Carlo error is that of the posterior draws alone.

    Draws that repeat (a point fit; an ensemble's members, tiled by
    :meth:`~pyro_node_uq.methods.MethodResult.posterior_samples`) are paired once per distinct value, weighted by
    their counts.  Otherwise the pair term runs over draw ``s`` against draw ``s + k`` for every shift ``k`` (all
    ``S^2`` pairs, ``O(S^2)`` work), or, with ``num_shifts``, the ``S`` pairs ``(s, s)`` exactly and the others
    estimated without bias from the shifts ``k = 1 .. num_shifts`` in a fixed random order of the draws (cheaper,
    but the same pairs serve every entry, so its error does not average out over the entries).

    :param torch.Tensor y_mean: noise-free predictive means ``(S, N, T, D)``.
    :param torch.Tensor y: observed ``(N, T, D)``.
    :param scale: noise std, a float or a tensor broadcastable to ``(S, N, T, D)`` (per draw for a latent scale).
    :param mask: observed entries ``(N, T)`` or ``(N, T, D)``, or ``None``.
    :param int num_shifts: pairs per draw estimating the pair term (default ``None``: all of them, exact).

    Example::

        >>> import torch
        >>> y_mean, y = torch.zeros(3, 1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64)
        >>> round(crps_normal_mixture(y_mean, y, 1.0), 6)  # one Normal(0, 1) at y = 0: (sqrt(2) - 1) / sqrt(pi)
        0.233695
    """
    mask = _check(y_mean, y, mask, "y_mean")
    scale = torch.as_tensor(scale, dtype=y_mean.dtype, device=y_mean.device)
    if not bool((scale > 0).all()):
        raise ValueError("crps_normal_mixture: scale must be positive")
    S = y_mean.shape[0]
    K = S - 1 if num_shifts is None else min(check_int(num_shifts, "num_shifts", minimum=1), S - 1)
    var = (scale * scale).expand(y_mean.shape)
    term1 = _abs_normal_mean(y_mean - y, var).mean(0)
    flat = torch.cat([y_mean.reshape(S, -1), var.reshape(S, -1)], 1)
    values, counts = torch.unique(flat, dim=0, return_counts=True)
    if len(values) < S and len(values) <= K:  # every pair of distinct draws, weighted by their counts
        mu, v = values[:, :flat.shape[1] // 2], values[:, flat.shape[1] // 2:]
        w = counts.to(y_mean.dtype) / S
        pair = sum(w[i] * (w[:, None] * _abs_normal_mean(mu[i] - mu, v[i] + v)).sum(0) for i in range(len(values)))
        pair = pair.reshape(term1.shape)
    else:  # the pairs (s, s) exactly, the others from cyclic shifts of a fixed random order
        order = torch.randperm(S, generator=torch.Generator().manual_seed(0)).to(y_mean.device)
        mu, v = y_mean[order], var[order]
        shifted = (_abs_normal_mean(mu - mu.roll(k, 0), v + v.roll(k, 0)).mean(0) for k in range(1, K + 1))
        off = sum(shifted) / K if K else 0.0
        pair = (_abs_normal_mean(torch.zeros_like(v), 2 * v).mean(0) + (S - 1) * off) / S
    return _masked_mean(term1 - 0.5 * pair, mask)


def _interval(samples, level):
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=samples.dtype, device=samples.device)
    lo, hi = torch.quantile(samples, q, dim=0)
    return lo, hi


def interval_coverage(samples, y, level, mask=None):
    """Fraction of ``y`` inside the central ``level`` interval of the samples, and the interval's mean width."""
    mask = _check(samples, y, mask)
    lo, hi = _interval(samples, level)
    inside = ((y >= lo) & (y <= hi)).to(samples.dtype)
    return _masked_mean(inside, mask), _masked_mean(hi - lo, mask)


def calibration_curve(samples, y, mask=None, levels=None):
    """Observed against nominal coverage of central intervals, and the miscalibration area.

    :returns: ``(nominal, observed, area)``; ``area`` is the mean of ``|observed - nominal|`` over the nominal
        grid (default 0.05, 0.10, ..., 0.95): 0 is perfectly calibrated, about 0.5 is the worst possible.
    """
    levels = torch.linspace(0.05, 0.95, 19, dtype=torch.float64) if levels is None else torch.as_tensor(levels)
    observed = torch.tensor([interval_coverage(samples, y, float(lv), mask)[0] for lv in levels], dtype=levels.dtype)
    return levels, observed, float((observed - levels).abs().mean())


def _mean_pairwise(a, b, exclude_diagonal):
    """Mean Euclidean distance between rows of ``a`` ``(N, S, K)`` and ``b`` ``(N, S', K)``, per trajectory."""
    d = torch.cdist(a, b)
    if exclude_diagonal:
        S = a.shape[1]
        return d.sum((-1, -2)) / (S * (S - 1))
    return d.mean((-1, -2))


def energy_distance(samples_p, samples_q, mask=None):
    """Energy distance between two predictive distributions, per trajectory, averaged over trajectories.

    Each trajectory's observed entries form one vector; ``D = 2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with the
    within-distribution terms as unbiased U-statistics (so ``D`` is an unbiased estimate, near 0 for equal laws).

    :param samples_p: ``(S, N, T, D)`` samples of the first method.
    :param samples_q: ``(S', N, T, D)`` samples of the second.
    :param mask: entries to use, ``(N, T)`` or ``(N, T, D)``.
    """
    if samples_p.shape[1:] != samples_q.shape[1:]:
        raise ValueError(f"energy_distance: sample shapes differ beyond the sample dim: {tuple(samples_p.shape)} "
                         f"vs {tuple(samples_q.shape)}")
    mask = _check(samples_p, samples_p[0], mask)
    values = []
    for n in range(samples_p.shape[1]):
        m = mask[n]
        p, q = samples_p[:, n][:, m][None], samples_q[:, n][:, m][None]
        values.append(2 * _mean_pairwise(p, q, False) - _mean_pairwise(p, p, True) - _mean_pairwise(q, q, True))
    return float(torch.cat(values).mean())


def _fill_unobserved(y, mask):
    """``y`` with unobserved entries (which may be NaN, as the model accepts) set to 0; observed entries must be
    finite."""
    observed = _check(y[None], y, mask, "y")
    bad = ~torch.isfinite(y) & observed
    if bad.any():
        i = tuple(int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"y: observed entry {i} is NaN or inf; mark it unobserved with mask=")
    return torch.where(observed, y, torch.zeros_like(y))


def _sample_scores(samples, y, mask, levels, prefix=""):
    out = {f"{prefix}rmse": rmse(samples, y, mask), f"{prefix}crps": crps(samples, y, mask)}
    for level in levels:
        cov, width = interval_coverage(samples, y, level, mask)
        pct = round(100 * level)
        out[f"{prefix}coverage_{pct}"], out[f"{prefix}width_{pct}"] = cov, width
    _, _, area = calibration_curve(samples, y, mask)
    out[f"{prefix}miscalibration_area"] = area
    return out


def score(prediction, y, mask=None, noise_scale=None, noise="normal", df=4.0, h_true=None, reference=None,
          levels=LEVELS):
    """All scores of one method's posterior predictive on held-out trajectories, as a flat dict.

    :param dict prediction: ``"obs"`` ``(S, N, T, D)`` predictive samples; optional ``"y_mean"`` (needed for the
        NLL) and ``"hidden"`` ``(S, N, T, H)`` (as returned by :meth:`MethodResult.predict`).
    :param torch.Tensor y: observed ``(N, T, D)``.
    :param mask: observed entries ``(N, T)`` or ``(N, T, D)``, or ``None``.
    :param noise_scale: the noise std of the model (float or tensor broadcastable to ``(S, N, T, D)``) for the NLL
        (and, Normal noise, for the CRPS: :func:`crps_normal_mixture`; without it the CRPS is :func:`crps` of the
        noisy samples).
    :param str noise: ``"normal"`` or ``"studentt"`` noise model for the NLL.
    :param torch.Tensor h_true: true hidden states ``(N, T, K)``: adds ``hidden_*`` scores of the first ``K``
        hidden components (no noise: coverage and CRPS of the noise-free state).
    :param dict reference: another method's prediction: adds ``energy_distance`` between the two ``"obs"``.
    :param levels: central-interval levels for coverage and width.
    :returns: dict ``rmse``, ``crps``, ``nll`` (when possible), ``coverage_50``, ``width_50``, ...,
        ``miscalibration_area``, ``energy_distance``, ``hidden_rmse``, ... .

    Example::

        >>> import torch
        >>> y = torch.zeros(2, 5, 1)
        >>> pred = {"obs": torch.randn(400, 2, 5, 1), "y_mean": torch.zeros(400, 2, 5, 1)}
        >>> round(score(pred, y, noise_scale=1.0)["nll"], 4)  # -log N(0 | 0, 1)
        0.9189
    """
    y = _fill_unobserved(y, mask)
    out = _sample_scores(prediction["obs"], y, mask, levels)
    if noise_scale is not None and "y_mean" in prediction:
        out["nll"] = predictive_nll(prediction["y_mean"], y, noise_scale, mask, noise, df)
        if noise == "normal":  # the same predictive's CRPS, integrated over the noise instead of sampled
            out["crps"] = crps_normal_mixture(prediction["y_mean"], y, noise_scale, mask)
    if reference is not None:
        out["energy_distance"] = energy_distance(prediction["obs"], reference["obs"], mask)
    if h_true is not None and "hidden" in prediction:
        hidden = prediction["hidden"]
        K = h_true.shape[-1]
        if hidden.shape[-1] < K:
            raise ValueError(f"h_true: {K} true states but the prediction has {hidden.shape[-1]} hidden components")
        out.update(_sample_scores(hidden[..., :K], h_true, None, levels, prefix="hidden_"))  # truth is complete
    return out
