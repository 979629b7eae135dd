"""SDE-BNN on a 1-D toy regression with a gap in the inputs: posterior bands should widen in the gap.

Trains :class:`pyro_node_uq.models.SDEBNN` (zero-channel augmented 1-D input, OU weight prior, bottlenecked
drift, Euler-Maruyama) with SVI and saves ``docs/images/sdebnn_toy.png``.  The last line compares the width of
the 90% band of the function (epistemic) inside the gap with its width over the observed inputs.

    python benchmarks/sdebnn_toy.py [--steps 2500] [--sigma 0.5] [--seed 0] [--out docs/images/sdebnn_toy.png]
"""
import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pyro_node_uq.data import StaticSplit
from pyro_node_uq.methods import run_sdebnn
from pyro_node_uq.models import SDEBNN

GAP = (-0.4, 0.6)


def target(x):
    return torch.sin(2.5 * x) + 0.3 * x ** 2


def make_data(n=48, noise=0.08, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.rand(n // 2, generator=gen) * 1.4 - 1.8, torch.rand(n // 2, generator=gen) * 1.2 + 0.6])
    y = target(x) + noise * torch.randn(n, generator=gen)
    return x[:, None], y[:, None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--readout", default="linear", choices=("linear", "first"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/images/sdebnn_toy.png")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = make_data()
    net = SDEBNN(1, 1, hidden_dim=3, width=(16,), readout=args.readout, sigma=args.sigma, obs_scale=0.08,
                 bottleneck=32, solver={"method": "euler", "dt": 0.05}, seed=args.seed)
    fit = run_sdebnn(net, StaticSplit(x=x, y=y), num_steps=args.steps, lr=1e-2, lr_final=1e-3,
                     num_particles=args.particles, seed=args.seed, progress_bar=not args.no_progress,
                     elbo_particles=0)
    print(f"trained {args.steps} steps x {args.particles} paths in {fit.wall_time:.1f} s, "
          f"final loss/point {fit.losses[-1] / len(x):.3f}")

    grid = torch.linspace(-2.4, 2.4, 241)[:, None]
    start = time.perf_counter()
    pred = fit.predict(StaticSplit(x=grid, y=torch.zeros_like(grid)), num_samples=args.samples)
    f = pred["y_mean"][..., 0]
    print(f"{args.samples} predictive paths on {len(grid)} inputs in {time.perf_counter() - start:.2f} s")
    lo, hi = f.quantile(0.05, 0), f.quantile(0.95, 0)
    width = hi - lo
    g = grid[:, 0]
    in_gap = (g > GAP[0] + 0.1) & (g < GAP[1] - 0.1)
    in_data = ((g > -1.8) & (g < -0.4)) | ((g > 0.6) & (g < 1.8))
    ratio = float(width[in_gap].mean() / width[in_data].mean())
    rmse = float((f.mean(0)[in_data] - target(g[in_data])).pow(2).mean().sqrt())

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axvspan(*GAP, color="0.93", label="gap (no data)")
    ax.fill_between(g, pred["obs"][..., 0].quantile(0.05, 0), pred["obs"][..., 0].quantile(0.95, 0),
                    color="C0", alpha=0.15, label="90% predictive (with noise)")
    ax.fill_between(g, lo, hi, color="C0", alpha=0.35, label="90% posterior of f")
    for s in range(8):
        ax.plot(g, f[s], color="C0", lw=0.6, alpha=0.6)
    ax.plot(g, f.mean(0), color="C0", lw=2, label="posterior mean")
    ax.plot(g, target(g), "k--", lw=1, label="true function")
    ax.scatter(x[:, 0], y[:, 0], s=14, color="C3", zorder=3, label="training data")
    ax.set(xlabel="x", ylabel="y", ylim=(-2.2, 3.2),
           title=f"SDE-BNN (OU weight prior, sigma={args.sigma}): band in gap / band on data = {ratio:.2f}")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(f"saved {args.out}")
    print(f"RESULT gap_band_ratio={ratio:.3f} band_in_gap={float(width[in_gap].mean()):.3f} "
          f"band_on_data={float(width[in_data].mean()):.3f} rmse_on_data={rmse:.3f} train_time_s={fit.wall_time:.1f}")


if __name__ == "__main__":
    main()
