"""Per-unit prediction plots for units with doses: observations, predictive median and 50/90% bands, dose marks."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

__all__ = ["plot_units"]


def plot_units(prediction, units, title="", time_unit="", output_name="y", max_units=6, site="obs"):
    """One panel per unit (the first ``max_units``): its observations (dots; censored ones as open triangles at the
    limit), the predictive median and 50/90% bands of ``site``, and its doses (marks on the time axis, size by
    amount; infusions as bars over their duration).

    :param dict prediction: ``site`` -> samples ``(S, N, T, D)`` on ``units.t``.
    :param units: the :class:`~pyro_node_uq.data.Units`.
    :param str title: figure title.
    :param str time_unit: label of the time axis.
    :param str output_name: label of the value axis.
    :param int max_units: number of panels.
    :param str site: which prediction to draw.
    :returns: the matplotlib figure.

    Example::

        >>> from pyro_node_uq.data import Units
        >>> from pyro_node_uq.distributions import DoseSchedule
        >>> u = Units(t=torch.arange(1.0, 5.0), x=None, y=torch.ones(2, 4, 1),
        ...           doses=DoseSchedule.from_lists([[0.0], [0.0]], [[1.0], [2.0]]))
        >>> fig = plot_units({"obs": torch.randn(50, 2, 4, 1)}, u)
        >>> len(fig.axes)
        2
    """
    samples = prediction[site][..., 0].detach().cpu().double()
    n = min(max_units, len(units))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharex=True)
    t = units.t.detach().cpu().double().numpy()
    lo90, lo50, med, hi50, hi90 = samples.quantile(torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.double), 0)
    doses = None if units.doses is None else type(units.doses)(*(v.cpu() for v in units.doses))
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        if i >= n:
            ax.axis("off")
            continue
        ax.fill_between(t, lo90[i], hi90[i], color="C0", alpha=0.18, lw=0, label="90% band")
        ax.fill_between(t, lo50[i], hi50[i], color="C0", alpha=0.35, lw=0, label="50% band")
        ax.plot(t, med[i], color="C0", lw=1.5, label="median")
        seen = units.mask[i].cpu()
        cens = units.censored[i].cpu() & seen if units.censored is not None else torch.zeros_like(seen)
        y = units.y[i, :, 0].detach().cpu()
        ax.plot(t[seen & ~cens], y[seen & ~cens], "o", color="k", ms=3.5, label="observed")
        if cens.any():
            ax.plot(t[cens], y[cens], "v", mfc="none", color="k", ms=5, label="below LLOQ")
        real = doses.mask[i] if doses is not None else torch.zeros(0, dtype=torch.bool)
        amounts = doses.amount[i][real] if doses is not None else torch.zeros(0)
        ends = (doses.end() - doses.time)[i][real] if doses is not None else torch.zeros(0)
        for time, amount, dur in zip(doses.time[i][real].tolist() if doses is not None else [], amounts.tolist(),
                                     ends.tolist()):
            size = 4 + 6 * amount / float(amounts.max())
            ax.plot([time], [0], marker="^", color="C3", ms=size, clip_on=False, transform=ax.get_xaxis_transform())
            if dur > 0:
                ax.axvspan(time, time + dur, color="C3", alpha=0.12, lw=0)
        ax.set_title(f"unit {int(units.ids[i])}", fontsize=9)
        if i % cols == 0:
            ax.set_ylabel(output_name)
        if i // cols == rows - 1:
            ax.set_xlabel(f"time [{time_unit}]" if time_unit else "time")
    axes[0][0].plot([], [], "^", color="C3", label="dose")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
