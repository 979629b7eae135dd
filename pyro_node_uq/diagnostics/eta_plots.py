"""Random effects against covariates: the plot pharmacometricians read to find a covariate relation the model
lacks (a trend of a unit's effect with its covariate) or one it over-corrects."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

__all__ = ["plot_eta_covariates"]


def plot_eta_covariates(eta, covariates, eta_names, covariate_names, path=None, title=None):
    """A grid of scatter plots, one row per random effect and one column per covariate, each with a least-squares
    line and its correlation in the title; without covariates, one histogram per effect instead.

    :param eta: ``(N, k)`` individual effects (e.g. :func:`~pyro_node_uq.diagnostics.nlme.individual_effects`).
    :param covariates: ``(N, C)`` covariates on their own scale, or ``None``.
    :param eta_names: the ``k`` effects' names; ``covariate_names``: the ``C`` covariates' names.
    :param str path: save a PNG here (and close the figure); ``None`` returns it open.
    :rtype: matplotlib.figure.Figure

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> wt = 50 + 30 * torch.rand(20, 1, generator=g, dtype=torch.float64)
        >>> eta = torch.cat([0.01 * (wt - 65), torch.randn(20, 1, generator=g, dtype=torch.float64)], 1)
        >>> fig = plot_eta_covariates(eta, wt, ["CL", "V"], ["WT"])
        >>> [ax.get_title() for ax in fig.axes]
        ['eta[CL] vs WT: r = 1.00', 'eta[V] vs WT: r = -0.21']
    """
    eta = torch.as_tensor(eta, dtype=torch.float64).detach()  # a plot: values only
    k = eta.shape[-1]
    if len(eta_names) != k:
        raise ValueError(f"eta_names: expected {k} names (one per column of eta), got {list(eta_names)}")
    cov = None if covariates is None else torch.as_tensor(covariates, dtype=torch.float64).detach().reshape(len(eta), -1)
    C = 0 if cov is None else cov.shape[-1]
    if cov is not None and len(covariate_names) != C:
        raise ValueError(f"covariate_names: expected {C} names (one per column of covariates), got "
                         f"{list(covariate_names)}")
    fig, axes = plt.subplots(k, max(C, 1), figsize=(3.2 * max(C, 1), 2.6 * k), squeeze=False)
    for j in range(k):
        e = eta[:, j]
        if not C:
            axes[j, 0].hist(e.tolist(), bins=max(5, len(e) // 3), color="tab:blue", alpha=0.7)
            axes[j, 0].set_title(f"eta[{eta_names[j]}]", fontsize=9)
            continue
        for c in range(C):
            ax, x = axes[j, c], cov[:, c]
            ax.scatter(x.tolist(), e.tolist(), s=14, color="tab:blue", alpha=0.8)
            ax.axhline(0.0, color="0.6", lw=0.8)
            r = float(torch.corrcoef(torch.stack([x, e]))[0, 1]) if x.std() > 0 and e.std() > 0 else float("nan")
            if x.std() > 0:
                slope = ((x - x.mean()) * (e - e.mean())).sum() / (x - x.mean()).pow(2).sum()
                grid = torch.stack([x.min(), x.max()])
                ax.plot(grid.tolist(), (e.mean() + slope * (grid - x.mean())).tolist(), color="tab:red", lw=1.2)
            ax.set_title(f"eta[{eta_names[j]}] vs {covariate_names[c]}: r = {r:.2f}", fontsize=9)
            ax.set_xlabel(covariate_names[c], fontsize=8)
            ax.set_ylabel(f"eta[{eta_names[j]}]", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig
