"""Cost/quality frontier of AutoLangevin along its dial, against AutoNormal and full-rank Gaussian VI (not a test).

Two problems with exact answers, each fitted with plain Pyro ``SVI(model, guide, Adam(lr),
Trace_ELBO(num_particles=16, vectorize_particles=True))`` from the guide's defaults (no warm start), float64:

* eight schools, non-centred: posterior mean / sd of ``tau`` and ``theta[0]`` from 20000 draws against the exact
  values by quadrature (``tests/infer/autoguide/eight_schools.py``);
* Bayesian linear regression, d = 10, n = 40, correlated features (rho = 0.9): the ELBO gap
  ``log p(y) - ELBO`` (closed-form evidence, 10^4 draws) over AutoNormal's gap.

Cost is the fit's CPU time (``time.process_time``, one thread: robust to other processes on a shared machine), over
AutoNormal's fit measured in the same run.  Settings along the dial (``--settings``,
comma separated): ``autonormal``, ``fullrank`` (Pyro's AutoMultivariateNormal), ``diag5`` / ``diag10`` (diagonal
reference, K = 5 / 10), ``full1`` / ``full5`` / ``full10`` / ``full20`` (full-rank reference, K = 1..20),
``hybrid10`` (full-rank, hybrid score, K = 10).  ``--png`` draws the frontier.
Measured (seed 0, 3000 steps, on a shared 2-core machine; the moments and gaps were identical in two runs).  Whole-fit
CPU time over AutoNormal's, eight schools / BLR: diag10 2.20x / 3.75x, full1 1.11x / 1.81x, full5 1.57x / 2.57x,
full10 2.15x / 4.10x:

==========  ========  ======  ========  ======  =======  =====
setting     tau mean  tau sd  th0 mean  th0 sd  BLR gap  ratio
==========  ========  ======  ========  ======  =======  =====
autonormal  -11.6%    -14.5%  -14.3%    -7.3%   8.939    1
diag10      -6.3%     -1.6%   -8.2%     +2.2%   1.956    0.219
full1       -12.9%    -13.3%  -2.5%     +2.7%   0.195    0.022
full5       -7.3%     -12.1%  -6.1%     -1.0%   0.080    0.009
full10      +0.7%     +1.5%   -6.2%     +7.0%   0.063    0.007
==========  ========  ======  ========  ======  =======  =====

Last line: ``RESULT <setting>_tau_sd_err=... <setting>_gap_ratio=... <setting>_time_ratio=...``.

    python benchmarks/langevin_frontier.py [--steps 3000] [--settings autonormal,full5,full10] [--png out.png]
"""
import argparse
import os
import sys
import time

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

from pyro_node_uq.infer import AutoLangevin

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "infer", "autoguide"))
import eight_schools
from conjugate import BayesLinReg, mean_and_se, per_particle_elbo

SETTINGS = {
    "autonormal": lambda m: AutoNormal(m),
    "fullrank": lambda m: AutoMultivariateNormal(m),
    "diag5": lambda m: AutoLangevin(m, reference="diagonal", num_steps=5),
    "diag10": lambda m: AutoLangevin(m, reference="diagonal", num_steps=10),
    "full1": lambda m: AutoLangevin(m, reference="full", num_steps=1),
    "full5": lambda m: AutoLangevin(m, reference="full", num_steps=5),
    "full10": lambda m: AutoLangevin(m, reference="full", num_steps=10),
    "full20": lambda m: AutoLangevin(m, reference="full", num_steps=20),
    "hybrid10": lambda m: AutoLangevin(m, reference="full", num_steps=10, score="hybrid"),
}


def fit(model, make, steps, lr, seed, *args):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = make(model)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO(num_particles=16, vectorize_particles=True))
    start = time.process_time()
    for _ in range(steps):
        svi.step(*args)
    return guide, time.process_time() - start


def draws(model, guide, num, *args):
    with torch.no_grad():
        if isinstance(guide, AutoLangevin):
            return guide.sample_ensemble(num, *args)
        return pyro.infer.Predictive(model, guide=guide, num_samples=num, return_sites=["mu", "tau", "eta", "w"],
                                     parallel=True)(*args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="autonormal,fullrank,diag10,full1,full5,full10,full20")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    ref = eight_schools.exact_moments()
    blr = BayesLinReg(d=10, n=40, rho=0.9)
    names = ["autonormal"] + [n for n in args.settings.split(",") if n != "autonormal"]
    rows, results = {}, []
    print(f"exact: tau {ref['tau_mean']:.3f} / {ref['tau_sd']:.3f}, theta0 {ref['theta0_mean']:.3f} / "
          f"{ref['theta0_sd']:.3f}; BLR log evidence {blr.log_evidence:.3f}")
    print(f"{'setting':<11} {'tau mean':>9} {'tau sd':>8} {'th0 mean':>9} {'th0 sd':>8} {'BLR gap':>8} {'ratio':>6} "
          f"{'8s time':>8} {'BLR time':>8}")
    for name in names:
        guide, t_es = fit(eight_schools.model, SETTINGS[name], args.steps, args.lr, args.seed)
        m = eight_schools.moments(draws(eight_schools.model, guide, 20000))
        err = {k: m[k] / ref[k] - 1 for k in ref}
        guide, t_blr = fit(blr, SETTINGS[name], args.steps, args.lr, args.seed, blr.y)
        elbo, _ = mean_and_se(per_particle_elbo(blr, guide, 10000, blr.y))
        gap = blr.log_evidence - elbo
        rows[name] = {"err": err, "gap": gap, "t_es": t_es, "t_blr": t_blr}
        base = rows["autonormal"]
        ratio, tr = gap / base["gap"], (t_es + t_blr) / (base["t_es"] + base["t_blr"])
        print(f"{name:<11} {100 * err['tau_mean']:>+8.1f}% {100 * err['tau_sd']:>+7.1f}% "
              f"{100 * err['theta0_mean']:>+8.1f}% {100 * err['theta0_sd']:>+7.1f}% {gap:>8.3f} {ratio:>6.3f} "
              f"{t_es / base['t_es']:>7.2f}x {t_blr / base['t_blr']:>7.2f}x", flush=True)
        results.append(f"{name}_tau_sd_err={err['tau_sd']:.3f} {name}_gap_ratio={ratio:.3f} {name}_time_ratio={tr:.2f}")
    if args.png:
        plot(rows, args.png)
    print("RESULT " + " ".join(results))


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = rows["autonormal"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in rows.items():
        t_es, t_blr = r["t_es"] / base["t_es"], r["t_blr"] / base["t_blr"]
        worst = max(abs(r["err"][k]) for k in r["err"])
        axes[0].scatter(t_es, 100 * abs(r["err"]["tau_sd"]), color="C0")
        axes[0].scatter(t_es, 100 * worst, color="C1", marker="x")
        axes[0].annotate(name, (t_es, 100 * abs(r["err"]["tau_sd"])), fontsize=8)
        axes[1].scatter(t_blr, r["gap"] / base["gap"], color="C0")
        axes[1].annotate(name, (t_blr, r["gap"] / base["gap"]), fontsize=8)
    axes[0].axhline(10, color="grey", ls=":")
    axes[0].set(xlabel="CPU time / AutoNormal's", ylabel="error vs exact (%)",
                title="eight schools: |tau sd error| (o), worst of 4 moments (x)")
    axes[1].axhline(0.1, color="grey", ls=":")
    axes[1].set(xlabel="CPU time / AutoNormal's", ylabel="ELBO gap / AutoNormal's", yscale="log",
                title="Bayesian linear regression, d = 10")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
