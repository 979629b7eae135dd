"""LTAU against a 5-member deep ensemble and AutoLangevin: error ranking, out-of-domain detection, cost.

For each problem (``chemical``, ``viscoelastic``) and each method, on every (trajectory, time) point:

* Spearman correlation between the method's uncertainty (LTAU: calibrated expected error; ensemble and
  AutoLangevin: predictive spread, the norm over outputs of the std of y_mean) and the true error of the
  method's own point prediction against the noise-free ``y_true``, on the evaluation half of the test split;
* out-of-domain AUROC: evaluation-half test points (in-domain) against extrapolation points (out-of-domain),
  scored by LTAU's mean neighbour distance (with the calibration's trajectory memory; for reference also its
  expected error) or by the spread;
* wall and CPU time, and the CPU-time ratio to one MAP training run measured in the same run (the machine is
  shared, so wall time mostly measures the neighbours' load; this process runs on one thread).

The first half of the test trajectories is the validation set of LTAU's calibration (scale, distance growth,
recalibration curve and trajectory memory); the calibration error (mean |coverage - level| of the predicted error
quantiles) is reported before and after on the other half.  ``--no-inputs`` and ``--no-memory`` give the LTAU of
before (hidden state and time only; no memory).

AutoLangevin is fitted with :func:`~pyro_node_uq.infer.run_langevin` (MAP, then AutoNormal, then AutoLangevin,
``--steps`` each); its cost includes the MAP and AutoNormal stages.

Measured (250 steps, k=10, one CPU thread; Spearman / AUROC, LTAU vs 5-member ensemble):

* seed 0: chemical 0.544 / 0.877 vs 0.483 / 0.856; viscoelastic 0.566 / 0.907 vs 0.529 / 0.899; LTAU cost 1.00x
  and 0.98x one MAP run (0.36 s CPU after training: index, predictions, calibration);
* seed 1: chemical 0.607 / 0.898 vs 0.719 / 0.806; viscoelastic 0.388 / 0.897 vs 0.453 / 0.858;
* seed 2: chemical 0.574 / 0.879 vs 0.439 / 0.842; viscoelastic 0.487 / 0.929 vs 0.447 / 0.851;
* seed 3: chemical 0.744 / 0.793 vs 0.637 / 0.671; viscoelastic 0.285 / 0.914 vs 0.421 / 0.898.

Seed 0 without inputs and memory (the LTAU of before): 0.283 / 0.746 and 0.232 / 0.826; inputs only 0.325 / 0.767
and 0.500 / 0.894; memory only 0.283 / 0.746 and 0.232 / 0.826 (the memory chosen is 0 without the inputs).
AutoLangevin (seed 0): 0.143 / 0.710 and 0.206 / 0.878 at 3.4x and 3.3x.

Usage: ``python benchmarks/ltau_quality.py [--steps 250] [--k 10] [--burn-in 0.25] [--problems chemical viscoelastic]``
"""
import argparse
import math
import os
import time

import pyro
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import LTAU
from pyro_node_uq.infer.ltau import calibration_error, node_errors, node_latent
from pyro_node_uq.methods import run_langevin, run_map


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
        fit = run_map(model, problem.train, num_steps=steps, seed=seed, progress_bar=False)
        one_run = one_run or one.read()
        test.append(node_latent(model, fit.guide, problem.test)[1])
        extra.append(node_latent(model, fit.guide, problem.extrapolation)[1])
    cost = clock.read()
    test, extra = torch.stack(test), torch.stack(extra)
    return {"unc": spread_of(test), "ood_in": spread_of(test), "ood_out": spread_of(extra),
                "err": true_error(test.mean(0), problem.test), "cost": cost, "one_run": one_run}


def run_ltau(problem, steps, k, half, burn_in, inputs=True, memory=True):
    pyro.clear_param_store()
    clock = Clock()
    model, ltau = problem.default_model(), LTAU(k=k, inputs=inputs)
    monitor = ltau.monitor(problem.train, start=int(burn_in * steps))
    with monitor:
        fit = run_map(model, problem.train, num_steps=steps, seed=0, callback=monitor, progress_bar=False)
    trained = clock.read()
    ltau.fit_node(model, fit.guide, problem.train)
    pred = ltau.predict_node(model, fit.guide, problem.test)
    extra = ltau.predict_node(model, fit.guide, problem.extrapolation)
    _, y_test = node_latent(model, fit.guide, problem.test)
    err = true_error(y_test, problem.test)
    ltau.calibrate(pred[:half], err[:half], memories=None if memory else (0.0,))
    cal_pred, cal_extra = pred.with_calibration(ltau.calibration), extra.with_calibration(ltau.calibration)
    cost = clock.read()
    cost["after_training_cpu"] = cost["cpu"] - trained["cpu"]
    held = pred[half:]
    cal_before = calibration_error(held.with_calibration(None), err[half:])
    cal_after = calibration_error(held.with_calibration(ltau.calibration), err[half:])
    return {"unc": cal_pred.mean, "raw": pred.mean, "ood_in": cal_pred.distance, "held": held,
                "ood_out": cal_extra.distance, "mean_in": cal_pred.mean, "mean_out": cal_extra.mean, "err": err, "cost": cost,
                "fit_time": fit.wall_time, "cal_before": cal_before, "cal_after": cal_after, "cal": ltau.calibration}


def run_langevin_fit(problem, steps, num_samples=64):
    pyro.clear_param_store()
    clock = Clock()
    res = run_langevin(problem.default_model(), problem.train, num_iters=steps, autonormal_steps=steps,
                       map_steps=steps, progress_bar=False, elbo_particles=0)
    with torch.no_grad():
        test = res.predict(problem.test, num_samples=num_samples, sites=("y_mean",))["y_mean"]
        extra = res.predict(problem.extrapolation, num_samples=num_samples, sites=("y_mean",))["y_mean"]
    cost = clock.read()
    return {"unc": spread_of(test), "ood_in": spread_of(test), "ood_out": spread_of(extra),
                "err": true_error(test.mean(0), problem.test), "cost": cost, "label": "AutoLangevin"}


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
    parser.add_argument("--seed", type=int, default=0, help="problem seed (data and noise)")
    parser.add_argument("--no-inputs", action="store_true", help="LTAU features without the inputs")
    parser.add_argument("--no-memory", action="store_true", help="LTAU calibration without trajectory memory")
    parser.add_argument("--no-langevin", action="store_true", help="skip AutoLangevin")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result, panels = [], []
    for name in args.problems:
        problem = load_problem(name, seed=args.seed)
        half = len(problem.test) // 2
        ens = run_ensemble(problem, args.steps)
        lt = run_ltau(problem, args.steps, args.k, half, args.burn_in, not args.no_inputs, not args.no_memory)
        nan = {"unc": ens["unc"] * math.nan, "err": ens["err"], "cost": {"wall": math.nan, "cpu": math.nan},
                   "label": "AutoLangevin (skipped)"}
        lv = nan if args.no_langevin else run_langevin_fit(problem, args.steps)
        one = ens["one_run"]
        print(f"\n{name}: {args.steps} steps per fit (LTAU records from step {int(args.burn_in * args.steps)}); "
              f"one MAP training run {one['wall']:.1f} s wall, {one['cpu']:.1f} s CPU; "
              f"Spearman on {len(problem.test) - half} held-out test trajectories; AUROC vs "
              f"{len(problem.extrapolation)} extrapolation trajectories")
        print(f"{'method':<24}{'spearman':>10}{'auroc':>8}{'wall_s':>8}{'cpu_s':>8}{'x_one_run(cpu)':>16}")
        rows = {"ltau": (lt, f"LTAU (k={args.k})"), "ensemble": (ens, "deep ensemble (5 MAP)"),
                "langevin": (lv, lv["label"])}
        for (r, label) in rows.values():
            skipped = not torch.isfinite(r["unc"]).all()
            rho, auc = (math.nan, math.nan) if skipped else scores(r["unc"], r["err"], r["ood_in"], r["ood_out"], half)
            r["rho"], r["auc"] = rho, auc
            c = r["cost"]
            print(f"{label:<24}{rho:>10.3f}{auc:>8.3f}{c['wall']:>8.1f}{c['cpu']:>8.1f}{c['cpu'] / one['cpu']:>16.2f}")
        panels.append((name, lt, half))
        raw_rho, auc_mean = scores(lt["raw"], lt["err"], lt["mean_in"], lt["mean_out"], half)
        print(f"LTAU: Spearman of the uncalibrated expected error {raw_rho:.3f}; OOD AUROC scored by the "
              f"expected error instead of the distance {auc_mean:.3f}; {lt['cal']}; calibration error "
              f"(mean |coverage - level|) {lt['cal_before']:.3f} -> {lt['cal_after']:.3f}; "
              f"MAP fit with recording {lt['fit_time']:.1f} s wall; LTAU after training (index, predictions, "
              f"calibration) {lt['cost']['after_training_cpu']:.2f} s CPU")
        result += [f"{name}_ltau_spearman={lt['rho']:.3f}", f"{name}_ensemble_spearman={ens['rho']:.3f}",
                   f"{name}_langevin_spearman={lv['rho']:.3f}", f"{name}_ltau_auroc={lt['auc']:.3f}",
                   f"{name}_ensemble_auroc={ens['auc']:.3f}", f"{name}_langevin_auroc={lv['auc']:.3f}",
                   f"{name}_ltau_cost_ratio={lt['cost']['cpu'] / one['cpu']:.2f}",
                   f"{name}_ensemble_cost_ratio={ens['cost']['cpu'] / one['cpu']:.2f}",
                   f"{name}_langevin_cost_ratio={lv['cost']['cpu'] / one['cpu']:.2f}"]
    if args.plot:
        os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
        plot(panels, args.plot)
    print("RESULT " + " ".join(result) + f" steps={args.steps} seed={args.seed} ltau_inputs={not args.no_inputs} "
          f"ltau_memory={not args.no_memory}")


if __name__ == "__main__":
    main()
