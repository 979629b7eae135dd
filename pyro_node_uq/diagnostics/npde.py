"""Normalised prediction distribution errors (NPDE) of a hierarchical model's observations, with their tests.

For each unit ``i`` with observations ``y_i`` (``n_i`` of them) and ``K`` data sets simulated from the model
for the same design (new random effects and new noise, :func:`simulate_replicates`):

* the simulations' mean ``E_i`` and covariance ``V_i = L_i L_i^T`` (Cholesky) decorrelate the observations and
  every simulation alike: ``y*_i = L_i^{-1} (y_i - E_i)``, ``y*_ik = L_i^{-1} (y_ik - E_i)``;
* the prediction distribution error ``pde_ij`` is the fraction of the ``K`` decorrelated simulations below the
  decorrelated observation (kept within ``[1 / (2K), 1 - 1 / (2K)]``), and ``npde_ij = Phi^{-1}(pde_ij)``.

With a correct model the NPDE are independent standard normal draws.  The summary tests are those of the NPDE
literature (Brendel et al. 2006; Comets et al. 2008): a t-test of mean 0, a chi-square test of variance 1 and a
Shapiro-Wilk test of normality (``scipy``; not run without it), combined into a global p-value, the smallest of
the three times their number (Bonferroni).  The prediction discrepancies ``pd`` (the same fractions without the
decorrelation) are returned too.
"""
import math

import torch

from ..distributions.studentt_cdf import studentt_log_cdf

__all__ = ["npde", "npde_tests", "simulate_replicates"]


def simulate_replicates(result, units, num_replicates=500, seed=0):
    """Observations simulated from a fitted hierarchical model for the design of ``units`` (their times, doses
    and covariates): each replicate draws the population parameters from the posterior, new random effects from
    the population and new observation noise.

    :param result: a fitted :class:`~pyro_node_uq.methods.MethodResult` of a hierarchical model.
    :param units: :class:`~pyro_node_uq.data.Units` giving the design.
    :param int num_replicates: simulated data sets ``K``.
    :returns: ``(K, N, T)`` simulated values of the first output at every time of the grid (read them at
        ``units.mask``).
    """
    import dataclasses

    new = dataclasses.replace(units, new_units=True)
    with torch.no_grad():
        out = result.predict(new, num_samples=num_replicates, seed=seed, sites=["obs"])
    return out["obs"][..., 0]


def npde(y, sims, mask):
    """NPDE and prediction discrepancies of the observations (module docstring).

    :param y: ``(N, T)`` observations.
    :param sims: ``(K, N, T)`` simulated observations for the same design.
    :param mask: ``(N, T)`` boolean, the observed entries.
    :returns: ``(npde, pd)``, each a 1-D tensor over the observed entries in row-major order of ``mask``.
    :raises ValueError: on mismatched shapes or fewer than 10 simulations.

    Example (observations drawn from the simulating distribution itself)::

        >>> g = torch.Generator().manual_seed(0)
        >>> sims = torch.randn(500, 4, 3, generator=g, dtype=torch.float64)
        >>> y = torch.randn(4, 3, generator=g, dtype=torch.float64)
        >>> e, pd = npde(y, sims, torch.ones(4, 3, dtype=torch.bool))
        >>> e.shape, bool(e.abs().max() < 3.5)
        (torch.Size([12]), True)
    """
    y, sims = torch.as_tensor(y), torch.as_tensor(sims)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if y.shape != mask.shape or sims.shape[1:] != y.shape or sims.dim() != 3:
        raise ValueError(f"npde: expected y (N, T), sims (K, N, T) and mask (N, T), got {tuple(y.shape)}, "
                         f"{tuple(sims.shape)} and {tuple(mask.shape)}")
    K = sims.shape[0]
    if K < 10:
        raise ValueError(f"npde: sims holds {K} simulated data sets; give at least 10 (hundreds for stable NPDE)")
    y, sims = y.double(), sims.double()
    low, high = 1.0 / (2 * K), 1.0 - 1.0 / (2 * K)
    normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), 1.0)
    errors, discrepancies = [], []
    for i in range(y.shape[0]):
        obs = mask[i]
        if not bool(obs.any()):
            continue
        yi, si = y[i, obs], sims[:, i, obs]  # (n,), (K, n)
        discrepancies.append(((si < yi).double().mean(0)).clamp(low, high))
        mean = si.mean(0)
        dev = si - mean
        cov = dev.T @ dev / (K - 1)
        cov = cov + torch.eye(len(yi), dtype=cov.dtype) * 1e-10 * cov.diagonal().mean().clamp(min=1e-30)
        chol = torch.linalg.cholesky(cov)
        ystar = torch.linalg.solve_triangular(chol, (yi - mean)[:, None], upper=False)[:, 0]
        sstar = torch.linalg.solve_triangular(chol, dev.T, upper=False).T  # (K, n)
        errors.append((sstar < ystar).double().mean(0).clamp(low, high))
    pde, pd = torch.cat(errors), torch.cat(discrepancies)
    return normal.icdf(pde), pd


def _shapiro(values):
    try:
        from scipy.stats import shapiro
    except ImportError:
        return math.nan
    return float(shapiro(values.numpy()).pvalue) if 3 <= len(values) <= 5000 else math.nan


def npde_tests(values):
    """The NPDE summary: mean, variance, skewness, kurtosis (excess) and the p-values of the t-test of mean 0,
    the chi-square test of variance 1 (two-sided), the Shapiro-Wilk test (NaN without ``scipy`` or outside 3 to
    5000 values) and the global test (Bonferroni over the tests run).

    :param values: 1-D NPDE.
    :rtype: dict

    Example::

        >>> t = npde_tests(torch.randn(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
        >>> t["p_global"] > 0.05
        True
    """
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    n = x.numel()
    if n < 3:
        raise ValueError(f"npde_tests: need at least 3 values, got {n}")
    mean, var = float(x.mean()), float(x.var())
    z = (x - mean) / math.sqrt(var) if var > 0 else x - mean
    t = mean / math.sqrt(var / n) if var > 0 else math.inf
    p_mean = 2 * math.exp(float(studentt_log_cdf(torch.tensor(-abs(t), dtype=torch.float64), float(n - 1))))
    chi = torch.tensor((n - 1) * var, dtype=torch.float64)
    lower = float(torch.special.gammainc(torch.tensor((n - 1) / 2, dtype=torch.float64), chi / 2))
    p_var = min(1.0, 2 * min(lower, 1 - lower))
    p_sw = _shapiro(x)
    ps = [p for p in (p_mean, p_var, p_sw) if not math.isnan(p)]
    return {"n": n, "mean": mean, "variance": var, "skewness": float(z.pow(3).mean()),
            "kurtosis": float(z.pow(4).mean() - 3), "p_mean": p_mean, "p_variance": p_var, "p_shapiro": p_sw,
            "p_global": min(1.0, len(ps) * min(ps))}

