"""The comparison's figures: predictive bands per method, hidden states against truth, calibration curves and
cost against quality.  Every PNG is written atomically (a failed plot never leaves a broken file)."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib import ticker

from ..diagnostics import plot_calibration, plot_trajectories
from ..utils.persist import atomic_save
from .static_figures import reliability_diagram, static_bands

__all__ = ["plot_bands", "plot_calibrations", "plot_cost_quality", "plot_hidden", "save_png"]


def save_png(fig, path):
    """Save ``fig`` as a PNG at ``path`` atomically and close it."""
    try:
        atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def plot_bands(name, prediction, split, split_name, problem, path):
    """Predictive median and 50/90% bands of one method on three trajectories of a split (a static problem: see
    :func:`~pyro_node_uq.compare.static_figures.static_bands`)."""
    if problem.task != "trajectories":
        return save_png(static_bands(name, prediction, split, split_name, problem), path)
    if hasattr(split, "extras"):  # units (with dose events): one panel per unit, doses marked
        from .unit_figures import plot_units

        title = f"{problem.name}: {name} on {split_name} units"
        return save_png(plot_units(prediction, split, title, problem.time_unit, problem.obs_names[0]), path)
    fig = plot_trajectories(prediction, split, output_names=problem.obs_names,
                            title=f"{problem.name}: {name} on {split_name} trajectories")
    for ax in fig.axes:
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel(f"time [{problem.time_unit}]" if problem.time_unit else "time")
    return save_png(fig, path)


def plot_hidden(predictions, split, split_name, problem, path, trajectory=0, level=0.9):
    """Hidden states of every method against the true states on one trajectory (rows: methods; columns: the
    compared state components)."""
    K = problem.obs_dim
    names = list(predictions)
    t = split.t.cpu().numpy()
    fig, axes = plt.subplots(len(names), K, figsize=(4.2 * K, 2.0 * len(names) + 0.6), squeeze=False, sharex=True)
    q = torch.tensor([(1 - level) / 2, 0.5, (1 + level) / 2], dtype=torch.float64)
    for r, name in enumerate(names):
        hidden = predictions[name]["hidden"][:, trajectory, :, :K].double().cpu()
        lo, med, hi = torch.quantile(hidden, q, dim=0).numpy()
        for k in range(K):
            ax = axes[r, k]
            ax.fill_between(t, lo[:, k], hi[:, k], color="C1", alpha=0.35, lw=0, label=f"{int(100 * level)}% band")
            ax.plot(t, med[:, k], color="C1", lw=1.5, label="median")
            ax.plot(t, split.h_true[trajectory, :, k].cpu().numpy(), "k--", lw=1, label="true state")
            state = problem.state_names[k] if k < len(problem.state_names) else f"h{k}"
            ax.set_ylabel(f"{name}\n{state}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(f"time [{problem.time_unit}]" if problem.time_unit else "time")
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{problem.name}: hidden states vs truth, {split_name} trajectory {int(split.ids[trajectory])}")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the title
    return save_png(fig, path)


def plot_calibrations(predictions, split, split_name, problem, path):
    """Observed against nominal coverage of every method's central predictive intervals on a split
    (classification: a reliability diagram)."""
    if problem.task == "classification":
        return save_png(reliability_diagram(predictions, split, split_name, problem), path)
    fig = plot_calibration(predictions, split.y, split.mask,
                           title=f"{problem.name}: calibration on {split_name}")
    fig.set_size_inches(6, 6)
    return save_png(fig, path)


def plot_cost_quality(rows, path, metrics=(("test_nll", "test NLL"), ("extrap_crps", "extrapolation CRPS"))):
    """Wall time (log scale) against quality, one labelled point per method (metrics no method has are left
    out)."""
    metrics = [(k, label) for k, label in metrics if any(_finite(r.get(k)) for r in rows)] or list(metrics[:1])
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), squeeze=False)
    per_axis = []
    for ax, (key, label) in zip(axes[0], metrics):
        pts = [(r["method"], r["wall_time"], r.get(key)) for r in rows
               if r.get("status") == "ok" and _finite(r.get(key)) and _finite(r.get("wall_time"))]
        labels = []
        for i, (name, x, y) in enumerate(pts):
            ax.scatter(x, y, color=f"C{i % 10}", s=30, zorder=3)
            labels.append(ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("wall time [s] (log)")
        ax.set_ylabel(f"{label} (lower is better)")
        ax.grid(alpha=0.3)
        per_axis.append(labels)
    fig.suptitle("cost against quality")
    fig.tight_layout()
    for labels in per_axis:
        _separate_labels(fig, labels)
    return save_png(fig, path)


def _separate_labels(fig, labels, offsets=((4, 4), (4, -11), (4, 15), (4, -22), (-4, 26), (4, -33))):
    """Move point labels that would overlap an earlier one to the first free offset (points) in ``offsets``."""
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in sorted(labels, key=lambda a: -a.xy[1]):
        for dx, dy in offsets:
            label.set_position((dx, dy))
            label.set_horizontalalignment("left" if dx >= 0 else "right")
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        placed.append(label.get_window_extent(renderer))


def _finite(v):
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)
