"""The comparison's figures for static problems: predictive bands over a 1-D input (regression), predictive
entropy over a 2-D input and reliability diagrams (classification)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from ..diagnostics import predictive_entropy, reliability

__all__ = ["reliability_diagram", "static_bands"]


def static_bands(name, prediction, split, split_name, problem):
    """Regression over one input: median and 50/90% bands of the mean function and 90% of the noisy predictive
    against the targets.  Classification over two inputs: the points coloured by predictive entropy, the
    misclassified ones circled.  Returns the figure."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    title = f"{problem.name}: {name} on {split_name}"
    if problem.task == "classification":
        if split.x.shape[-1] != 2:
            raise ValueError(f"split.x: an entropy map needs 2 inputs, got {split.x.shape[-1]}")
        x = split.x.cpu().numpy()
        wrong = (prediction["probs"].mean(0).argmax(-1) != split.y).cpu().numpy()
        points = ax.scatter(x[:, 0], x[:, 1], c=predictive_entropy(prediction["probs"]).cpu().numpy(), s=18,
                            cmap="viridis", vmin=0)
        ax.scatter(x[wrong, 0], x[wrong, 1], s=60, facecolors="none", edgecolors="C3", label="misclassified")
        fig.colorbar(points, ax=ax, label="predictive entropy [nats]")
        ax.set(xlabel=problem.input_names[0], ylabel=problem.input_names[1], title=title, aspect="equal")
        ax.legend(fontsize=8, loc="upper right")
        return fig
    if split.x.shape[-1] != 1:
        raise ValueError(f"split.x: a band plot needs 1 input, got {split.x.shape[-1]}")
    order = split.x[:, 0].argsort()
    x = split.x[order, 0].cpu().numpy()
    q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
    f = torch.quantile(prediction["y_mean"][:, order, 0].double().cpu(), q, dim=0).numpy()
    obs = torch.quantile(prediction["obs"][:, order, 0].double().cpu(), q[[0, -1]], dim=0).numpy()
    ax.fill_between(x, obs[0], obs[1], color="C0", alpha=0.12, lw=0, label="90% predictive (with noise)")
    ax.fill_between(x, f[0], f[4], color="C0", alpha=0.25, lw=0, label="90% of the mean function")
    ax.fill_between(x, f[1], f[3], color="C0", alpha=0.35, lw=0, label="50% of the mean function")
    ax.plot(x, f[2], color="C0", lw=1.5, label="median")
    ax.scatter(x, split.y[order, 0].cpu().numpy(), s=10, color="k", zorder=3, label=f"{split_name} targets")
    ax.set(xlabel=problem.input_names[0], ylabel=problem.obs_names[0], title=title)
    ax.legend(fontsize=7, loc="best")
    return fig


def reliability_diagram(predictions, split, split_name, problem):
    """Accuracy against confidence of the posterior mean probabilities, one line per method.  Returns the
    figure."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="ideal")
    for name, pred in predictions.items():
        conf, acc, _ = zip(*reliability(pred["probs"], split.y, num_bins=10))
        ax.plot(conf, acc, "o-", ms=3, label=name)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{problem.name}: reliability on {split_name}")
    ax.legend(fontsize=8)
    return fig
