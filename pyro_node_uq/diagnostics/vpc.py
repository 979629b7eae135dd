"""A prediction-corrected visual predictive check (pcVPC, Bergstrand et al. 2011) against time after dose.

Observations and data sets simulated for the same design (:func:`~pyro_node_uq.diagnostics.npde.
simulate_replicates`) are binned by time after the most recent dose (bins at quantiles of the observed times).
Every value is prediction-corrected, ``pc = lb + (y - lb) (PRED_bin - lb) / (PRED - lb)`` with the lower bound
``lb = 0`` (concentrations) and ``PRED_bin`` the median population prediction in its bin, which removes the
spread that differing doses, covariates and sampling times within a bin would add.  Per bin: the observed
percentiles (default 5, 50, 95) of the corrected observations, and for each percentile the central interval
(default 90%) of the same percentile over the simulated data sets.  A model whose observed percentiles stay
inside the simulated bands reproduces the data's central tendency and spread.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

__all__ = ["plot_vpc", "time_after_dose", "vpc_table"]


def time_after_dose(units):
    """``(N, T)`` time since each unit's most recent dose at or before each grid time (the time itself where no
    dose came before, or without doses)."""
    t = units.unit_times if units.t.dim() == 2 else units.t.expand(len(units), -1)
    doses = units.doses
    if doses is None:
        return t.clone()
    before = doses.mask[:, None, :] & (doses.time[:, None, :] <= t[..., None])  # (N, T, K)
    last = torch.where(before, doses.time[:, None, :], torch.full_like(doses.time[:, None, :], -torch.inf))
    last = last.max(-1).values
    return torch.where(torch.isfinite(last), t - last, t)


def _bin_edges(x, num_bins):
    q = torch.linspace(0, 1, num_bins + 1, dtype=torch.float64)
    edges = torch.unique(x.double().quantile(q))
    edges[-1] = edges[-1] + 1e-9 * max(1.0, float(edges[-1].abs()))
    return edges


def vpc_table(tad, dv, pred, sims, num_bins=8, percentiles=(5, 50, 95), level=0.9, lower_bound=0.0):
    """The pcVPC per bin (module docstring).

    :param tad: ``(M,)`` time after dose of the observations.
    :param dv: ``(M,)`` observations.
    :param pred: ``(M,)`` population predictions (``PRED``).
    :param sims: ``(K, M)`` simulated observations.
    :param int num_bins: the most bins (fewer when times repeat).
    :param percentiles: the percentiles drawn.
    :param float level: the simulated percentiles' central interval.
    :param float lower_bound: ``lb`` of the correction; observations whose ``PRED`` is not above it (a sample
        before the first dose) are left uncorrected.
    :returns: ``(frame, corrected)``: a :class:`pandas.DataFrame` with one row per bin and percentile (``bin,
        tad_lo, tad_hi, tad_mid, n, percentile, observed, sim_lo, sim_median, sim_hi``) and the corrected
        observations ``(M,)``.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> tad = torch.rand(200, generator=g, dtype=torch.float64) * 12
        >>> pred = 10 * torch.exp(-0.2 * tad)
        >>> sims = pred * torch.exp(0.2 * torch.randn(300, 200, generator=g, dtype=torch.float64))
        >>> frame, pc = vpc_table(tad, sims[0], pred, sims[1:], num_bins=4)
        >>> len(frame), bool(((frame.observed >= frame.sim_lo) & (frame.observed <= frame.sim_hi)).mean() > 0.5)
        (12, True)
    """
    import pandas as pd

    tad, dv, pred = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (tad, dv, pred))
    sims = torch.as_tensor(sims, dtype=torch.float64)
    if sims.dim() != 2 or sims.shape[1] != tad.numel() or dv.numel() != tad.numel() or pred.numel() != tad.numel():
        raise ValueError(f"vpc_table: expected tad, dv, pred (M,) and sims (K, M), got {tuple(tad.shape)}, "
                         f"{tuple(dv.shape)}, {tuple(pred.shape)} and {tuple(sims.shape)}")
    edges = _bin_edges(tad, num_bins)
    which = torch.bucketize(tad, edges[1:-1], right=True)
    q = torch.tensor([p / 100 for p in percentiles], dtype=torch.float64)
    band = torch.tensor([(1 - level) / 2, 0.5, (1 + level) / 2], dtype=torch.float64)
    corrected, corrected_sims = dv.clone(), sims.clone()
    rows = []
    for b in range(len(edges) - 1):
        inside = which == b
        if not bool(inside.any()):
            continue
        above = pred[inside] > lower_bound  # e.g. a sample before the first dose: left uncorrected
        middle = pred[inside][above].median() if bool(above.any()) else lower_bound
        factor = torch.where(above, (middle - lower_bound) / (pred[inside] - lower_bound).clamp(min=1e-300), 1.0)
        corrected[inside] = lower_bound + (dv[inside] - lower_bound) * factor
        corrected_sims[:, inside] = lower_bound + (sims[:, inside] - lower_bound) * factor
        observed = corrected[inside].quantile(q)
        simulated = corrected_sims[:, inside].quantile(q, dim=1).T.quantile(band, dim=0).T  # (P, 3)
        for p, obs, sim in zip(percentiles, observed.tolist(), simulated.tolist()):
            rows.append({"bin": b, "tad_lo": float(edges[b]), "tad_hi": float(edges[b + 1]),
                         "tad_mid": float(tad[inside].median()), "n": int(inside.sum()), "percentile": p,
                         "observed": obs, "sim_lo": sim[0], "sim_median": sim[1], "sim_hi": sim[2]})
    return pd.DataFrame(rows), corrected


def plot_vpc(frame, tad, corrected, path=None, title="prediction-corrected VPC", time_unit=None, obs_name=None):
    """Draw a :func:`vpc_table`: the corrected observations as points, the observed percentiles as lines (median
    solid, outer dashed) and the simulated percentiles' intervals as shaded bands (median band red, outer blue).

    :param frame: the table of :func:`vpc_table`.
    :param tad: ``(M,)`` time after dose of the observations.
    :param corrected: ``(M,)`` corrected observations.
    :param str path: save a PNG here (and close the figure); ``None`` returns it open.
    :rtype: matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(torch.as_tensor(tad).tolist(), torch.as_tensor(corrected).tolist(), s=9, color="0.45", alpha=0.6,
               label="observations (pc)", zorder=3)
    percentiles = sorted(frame.percentile.unique())
    for p in percentiles:
        part = frame[frame.percentile == p].sort_values("tad_mid")
        central = p == percentiles[len(percentiles) // 2]
        colour = "tab:red" if central else "tab:blue"
        ax.fill_between(part.tad_mid, part.sim_lo, part.sim_hi, color=colour, alpha=0.25 if central else 0.18,
                        label=f"simulated {p}th percentile (interval)", zorder=1)
        ax.plot(part.tad_mid, part.observed, color="black", ls="-" if central else "--", lw=1.6,
                label=f"observed {p}th percentile", zorder=4)
    for edge in sorted(set(frame.tad_lo) | set(frame.tad_hi)):
        ax.axvline(edge, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("time after dose" + (f" [{time_unit}]" if time_unit else ""))
    ax.set_ylabel(f"prediction-corrected {obs_name or 'observation'}")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig
