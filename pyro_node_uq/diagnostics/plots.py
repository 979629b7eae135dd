"""Figures: predictive bands against data, calibration curves, and ArviZ trace / pair plots of a few weights."""
import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from .metrics import calibration_curve

__all__ = ["plot_calibration", "plot_trajectories", "plot_weights"]


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig


def plot_trajectories(prediction, split, path=None, trajectories=(0, 1, 2), levels=(0.5, 0.9), output_names=None,
                      title=None):
    """Predictive median and central bands of ``prediction["obs"]`` against the data of ``split``.

    One row per trajectory, one column per output; the noise-free truth (``split.y_true``) is dashed.

    :param dict prediction: ``{"obs": (S, N, T, D), ...}`` (see :meth:`MethodResult.predict`).
    :param split: the split the prediction was made on.
    :param str path: save the figure as a PNG here (and close it); ``None`` returns it open.
    :param trajectories: indices of the trajectories to draw.
    :param levels: central-interval levels of the bands.
    :rtype: matplotlib.figure.Figure
    """
    obs = prediction["obs"].detach()
    t = split.t.detach().cpu().numpy()
    D = obs.shape[-1]
    rows = [i for i in trajectories if i < obs.shape[1]]
    fig, axes = plt.subplots(len(rows), D, figsize=(4.2 * D, 2.4 * len(rows)), squeeze=False, sharex=True)
    q = torch.tensor([0.5] + [p for lv in levels for p in ((1 - lv) / 2, (1 + lv) / 2)], dtype=obs.dtype,
                     device=obs.device)
    quant = torch.quantile(obs[:, rows], q, dim=0).cpu().numpy()
    for r, n in enumerate(rows):
        for d in range(D):
            ax = axes[r, d]
            for k, lv in enumerate(levels):
                ax.fill_between(t, quant[1 + 2 * k, r, :, d], quant[2 + 2 * k, r, :, d], color="C0",
                                alpha=0.15 + 0.15 * (len(levels) - 1 - k), lw=0, label=f"{int(100 * lv)}% band")
            ax.plot(t, quant[0, r, :, d], color="C0", lw=1.5, label="predictive median")
            y = split.y[n, :, d].cpu().numpy()
            seen = slice(None)
            if split.mask is not None:
                seen = (split.mask[n] if split.mask.dim() == 2 else split.mask[n, :, d]).cpu().numpy()
            ax.plot(t[seen], y[seen], "k.", ms=3.5, label="data")
            if split.y_true is not None:
                ax.plot(t, split.y_true[n, :, d].cpu().numpy(), "k--", lw=0.8, label="truth")
            name = output_names[d] if output_names is not None else f"output {d}"
            ax.set_ylabel(f"traj {int(split.ids[n])}: {name}", fontsize=8)
    axes[-1, 0].set_xlabel("time")
    axes[0, -1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_calibration(predictions, y, mask=None, path=None, title="Calibration of central intervals"):
    """Observed against nominal coverage for several methods, with each one's miscalibration area.

    :param dict predictions: method name -> ``(S, N, T, D)`` predictive samples (or a dict with ``"obs"``).
    :param torch.Tensor y: observations ``(N, T, D)``.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="ideal")
    for name, samples in predictions.items():
        samples = samples["obs"] if isinstance(samples, dict) else samples
        nominal, observed, area = calibration_curve(samples, y, mask)
        ax.plot(nominal.cpu().numpy(), observed.cpu().numpy(), "o-", ms=3, label=f"{name} (area {area:.3f})")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _first_entries(idata, site, count, later=None):
    """``coords`` selecting the first ``count`` entries of the first non-sample dim of ``site`` and the first
    ``later`` (default ``count``) of the others."""
    da = idata.posterior[site]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    return {d: da[d].values[:count if i == 0 or later is None else later] for i, d in enumerate(dims)}


def plot_weights(idata, sites=None, trace_path=None, pair_path=None, count=2):
    """``az.plot_trace`` and ``az.plot_pair`` for the first few components of a few weight sites.

    :param idata: an ``InferenceData`` from :func:`~pyro_node_uq.diagnostics.to_inference_data`.
    :param sites: posterior variables to show (default: the first two with "weight" or "bias" in the name).
    :param str trace_path: PNG path of the trace plot; ``pair_path``: of the pair plot.
    :param int count: components per dim to show.
    :returns: the two figures.
    """
    if sites is None:
        sites = [v for v in idata.posterior.data_vars if "weight" in v or "bias" in v][:2]
    if not sites:
        raise ValueError("sites: no weight or bias variables in idata.posterior; name the variables to plot")
    figs = []
    for kind, path in (("trace", trace_path), ("pair", pair_path)):
        coords = {}
        for site in sites:  # the pair plot keeps one entry of later dims: count x len(sites) panels a side
            coords.update(_first_entries(idata, site, count, later=None if kind == "trace" else 1))
        if kind == "trace":
            axes = az.plot_trace(idata, var_names=sites, coords=coords, compact=False)
        else:
            n = count * len(sites)
            axes = az.plot_pair(idata, var_names=sites, coords=coords, kind="scatter", marginals=True,
                                figsize=(2.2 * n, 2.2 * n), textsize=9, scatter_kwargs={"alpha": 0.5, "s": 30})
        fig = axes.ravel()[0].figure
        if kind == "trace":
            fig.tight_layout()
        figs.append(_save(fig, path))
    return figs
