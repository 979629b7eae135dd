"""LTAU against a 5-member deep ensemble and AutoLangevin: error ranking, out-of-domain detection, cost.

For each problem (``chemical``, ``viscoelastic``) and each method, on every (trajectory, time) point:

* Spearman correlation between the method's uncertainty (LTAU: calibrated expected error; ensemble and
  AutoLangevin: predictive spread, the norm over outputs of the std of y_mean) and the true error of the
  method's own point prediction against the noise-free ``y_true``, on the evaluation half of the test split;
* out-of-domain AUROC: evaluation-half test points (in-domain) against extrapolation points (out-of-domain),
  scored by LTAU's mean neighbour distance (and, for reference, its expected error) or by the spread;
* wall and CPU time, and the CPU-time ratio to one MAP training run measured in the same run (the machine is
  shared, so wall time mostly measures the neighbours' load; this process runs on one thread).

The first half of the test trajectories is the validation set of LTAU's calibration; the calibration error
(mean |coverage - level| of the predicted error quantiles) is reported before and after on the other half.

If ``pyro_node_uq.infer.AutoLangevin`` cannot be imported, ``AutoNormal`` is used instead and labelled so.

Usage: ``python benchmarks/ltau_quality.py [--steps 250] [--k 10] [--burn-in 0.25] [--problems chemical viscoelastic]``
"""
import argparse
import os
import time

import pyro
import torch
from pyro.infer import Predictive
from pyro.infer.autoguide import AutoNormal
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import LTAU, fit_map, fit_svi
from pyro_node_uq.infer.ltau import calibration_error, node_errors, node_latent

try:
    from pyro_node_uq.infer import AutoLangevin
except ImportError:
    AutoLangevin = None


class Clock:
    """Wall and CPU (this process) seconds since creation: on a shared machine the CPU time is the fair cost."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self):
        return {"wall": time.perf_counter() - self.wall, "cpu": time.process_time() - self.cpu}


def spread_of(y_means):
    """Predictive spread ``(N, T)``: norm over outputs of the std over members ``(S, N, T, obs_dim)``."""
    return y_means.std(0).norm(dim=-1)


def true_error(y_mean, split):
    return node_errors(y_mean, split, target=split.y_true)[0]


def scores(uncertainty, error, ood_in, ood_out, half):
    rho = spearmanr(uncertainty[half:].reshape(-1), error[half:].reshape(-1))[0]
    labels = torch.cat([torch.zeros(ood_in[half:].numel()), torch.ones(ood_out.numel())])
    auroc = roc_auc_score(labels, torch.cat([ood_in[half:].reshape(-1), ood_out.reshape(-1)]))
    return float(rho), float(auroc)


def run_ensemble(problem, steps, members=5):
    test, extra = [], []
    clock, one_run = Clock(), None
    for seed in range(members):
        pyro.clear_param_store()
        model = problem.default_model()
        one = Clock()
        fit = fit_map(model, problem.train, num_steps=steps, seed=seed, progress_bar=False)
        one_run = one_run or one.read()
        test.append(node_latent(model, fit.guide, problem.test)[1])
        extra.append(node_latent(model, fit.guide, problem.extrapolation)[1])
    cost = clock.read()
    test, extra = torch.stack(test), torch.stack(extra)
    return dict(unc=spread_of(test), ood_in=spread_of(test), ood_out=spread_of(extra),
                err=true_error(test.mean(0), problem.test), cost=cost, one_run=one_run)


def run_ltau(problem, steps, k, half, burn_in):
    pyro.clear_param_store()
    clock = Clock()
    model, ltau = problem.default_model(), LTAU(k=k)
    monitor = ltau.monitor(problem.train, start=int(burn_in * steps))
    with monitor:
        fit = fit_map(model, problem.train, num_steps=steps, seed=0, callback=monitor, progress_bar=False)
    ltau.fit_node(model, fit.guide, problem.train)
    pred = ltau.predict_node(model, fit.guide, problem.test)
    extra = ltau.predict_node(model, fit.guide, problem.extrapolation)
    _, y_test = node_latent(model, fit.guide, problem.test)
    err = true_error(y_test, problem.test)
    ltau.calibrate(pred[:half], err[:half])
    cost = clock.read()
    held = pred[half:]
    cal_before = calibration_error(held.with_calibration(None), err[half:])
    cal_after = calibration_error(held.with_calibration(ltau.calibration), err[half:])
    return dict(unc=pred.with_calibration(ltau.calibration).mean, raw=pred.mean, ood_in=pred.distance, held=held,
                ood_out=extra.distance, mean_in=pred.mean, mean_out=extra.mean, err=err, cost=cost,
                fit_time=fit.wall_time, cal_before=cal_before, cal_after=cal_after, cal=ltau.calibration)


def run_langevin(problem, steps, num_samples=64):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = problem.default_model()
    init = model.init_loc_fn(0)
    if AutoLangevin is not None:
        try:
            guide = AutoLangevin(model, init_loc_fn=init)
        except TypeError:  # a constructor without init_loc_fn
            guide = AutoLangevin(model)
        label = "AutoLangevin"
    else:
        guide, label = AutoNormal(model, init_loc_fn=init, init_scale=0.01), "AutoNormal(stand-in)"
    clock = Clock()
    fit_svi(model, guide, problem.train, num_steps=steps, lr=2e-2, progress_bar=False, desc=label)
    pred = Predictive(model, guide=guide, num_samples=num_samples, parallel=True, return_sites=["y_mean"])
    with torch.no_grad():
        test = pred(*problem.test.args, **problem.test.kwargs)["y_mean"].reshape((num_samples,) + problem.test.y.shape)
        extra = pred(*problem.extrapolation.args, **problem.extrapolation.kwargs)["y_mean"]
    extra = extra.reshape((num_samples,) + problem.extrapolation.y.shape)
    cost = clock.read()
    return dict(unc=spread_of(test), ood_in=spread_of(test), ood_out=spread_of(extra),
                err=true_error(test.mean(0), problem.test), cost=cost, label=label)


def plot(panels, path):
    """Calibration curves (held-out coverage of the predicted error quantiles) and predicted vs true errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    fig, axes = plt.subplots(2, len(panels), figsize=(5 * len(panels), 9), squeeze=False)
    for j, (name, lt, half) in enumerate(panels):
        err = lt["err"][half:]
        ax = axes[0, j]
        for cal, label in ((None, "uncalibrated"), (lt["cal"], "calibrated on validation")):
            q = lt["held"].with_calibration(cal).quantile(levels)
            ax.plot(levels, (err[..., None] <= q).double().mean((0, 1)), "o-", label=label)
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
        ax.set(title=f"{name}: LTAU error quantiles (held-out test)", xlabel="nominal level p",
               ylabel="fraction of true errors below the p-quantile", xlim=(0, 1), ylim=(0, 1))
        ax.legend()
        ax = axes[1, j]
        ax.loglog(lt["unc"][half:].reshape(-1), err.reshape(-1).clamp(min=1e-5), ".", alpha=0.4)
        ax.set(title=f"{name}: Spearman {lt['rho']:.2f}", xlabel="LTAU expected error (calibrated)",
               ylabel="true error |y_mean - y_true| (zeros drawn at 1e-5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["chemical", "viscoelastic"])
    parser.add_argument("--steps", type=int, default=250, help="optimisation steps of every fit")
    parser.add_argument("--k", type=int, default=10, help="LTAU neighbours")
    parser.add_argument("--burn-in", type=float, default=0.25, help="fraction of the first steps LTAU skips")
    parser.add_argument("--plot", default="results/ltau_calibration.png", help="PNG path ('' for none)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result, panels = [], []
    for name in args.problems:
        problem = load_problem(name)
        half = len(problem.test) // 2
        ens = run_ensemble(problem, args.steps)
        lt = run_ltau(problem, args.steps, args.k, half, args.burn_in)
        lv = run_langevin(problem, args.steps)
        one = ens["one_run"]
        print(f"\n{name}: {args.steps} steps per fit (LTAU records from step {int(args.burn_in * args.steps)}); "
              f"one MAP training run {one['wall']:.1f} s wall, {one['cpu']:.1f} s CPU; "
              f"Spearman on {len(problem.test) - half} held-out test trajectories; AUROC vs "
              f"{len(problem.extrapolation)} extrapolation trajectories")
        print(f"{'method':<24}{'spearman':>10}{'auroc':>8}{'wall_s':>8}{'cpu_s':>8}{'x_one_run(cpu)':>16}")
        rows = {"ltau": (lt, "LTAU (k=%d)" % args.k), "ensemble": (ens, "deep ensemble (5 MAP)"),
                "langevin": (lv, lv["label"])}
        for key, (r, label) in rows.items():
            rho, auc = scores(r["unc"], r["err"], r["ood_in"], r["ood_out"], half)
            r["rho"], r["auc"] = rho, auc
            c = r["cost"]
            print(f"{label:<24}{rho:>10.3f}{auc:>8.3f}{c['wall']:>8.1f}{c['cpu']:>8.1f}{c['cpu'] / one['cpu']:>16.2f}")
        panels.append((name, lt, half))
        raw_rho, auc_mean = scores(lt["raw"], lt["err"], lt["mean_in"], lt["mean_out"], half)
        print(f"LTAU: Spearman of the uncalibrated expected error {raw_rho:.3f}; OOD AUROC scored by the "
              f"expected error instead of the distance {auc_mean:.3f}; {lt['cal']}; calibration error "
              f"(mean |coverage - level|) {lt['cal_before']:.3f} -> {lt['cal_after']:.3f}; "
              f"MAP fit with recording {lt['fit_time']:.1f} s wall")
        result += [f"{name}_ltau_spearman={lt['rho']:.3f}", f"{name}_ensemble_spearman={ens['rho']:.3f}",
                   f"{name}_langevin_spearman={lv['rho']:.3f}", f"{name}_ltau_auroc={lt['auc']:.3f}",
                   f"{name}_ensemble_auroc={ens['auc']:.3f}", f"{name}_langevin_auroc={lv['auc']:.3f}",
                   f"{name}_ltau_cost_ratio={lt['cost']['cpu'] / one['cpu']:.2f}",
                   f"{name}_ensemble_cost_ratio={ens['cost']['cpu'] / one['cpu']:.2f}",
                   f"{name}_langevin_cost_ratio={lv['cost']['cpu'] / one['cpu']:.2f}"]
    if args.plot:
        os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
        plot(panels, args.plot)
    print("RESULT " + " ".join(result) + f" langevin_method={lv['label'].split('(')[0]} steps={args.steps}")


if __name__ == "__main__":
    main()
