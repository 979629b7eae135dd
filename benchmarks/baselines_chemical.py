"""Fit MAP, AutoNormal and NUTS on ``chemical`` and report held-out 90% coverage (and the other scores).

NUTS on the default chemical NODE (259 weights) is too slow for a shared CPU, so this uses a smaller vector
field (``--R-hidden``, default 4: 35 weights) for every method, to compare like with like.

    python benchmarks/baselines_chemical.py [--out DIR] [--seed N] [--quick]

Last line: ``RESULT key=value ...`` with test-trajectory 90% coverage of each method.
"""
import argparse
import os
import time

import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import (
    plot_calibration,
    plot_trajectories,
    plot_weights,
    score,
    to_inference_data,
)
from pyro_node_uq.methods import run_autonormal, run_map, run_nuts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--R-hidden", type=int, default=4)
    ap.add_argument("--num-train", type=int, default=8)
    ap.add_argument("--num-test", type=int, default=8)
    ap.add_argument("--num-times", type=int, default=41)
    ap.add_argument("--map-steps", type=int, default=1500)
    ap.add_argument("--vi-steps", type=int, default=1500)
    ap.add_argument("--nuts-samples", type=int, default=150)
    ap.add_argument("--nuts-warmup", type=int, default=150)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--tree-depth", type=int, default=5)
    ap.add_argument("--num-pred", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0, help="seed of every fit")
    ap.add_argument("--out", default=None, help="folder for PNGs")
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.map_steps, args.vi_steps, args.nuts_samples, args.nuts_warmup, args.num_pred = 30, 20, 4, 4, 8
    problem = load_problem("chemical", num_train=args.num_train, num_test=args.num_test,
                           num_times=args.num_times)
    model = problem.default_model(R_hidden=(args.R_hidden,))
    test = problem.test
    results = {}
    t0 = time.perf_counter()
    results["map"] = run_map(model, problem.train, num_steps=args.map_steps, lr=0.03, seed=args.seed,
                             progress_bar=False)
    results["autonormal"] = run_autonormal(model, problem.train, num_steps=args.vi_steps,
                                           warm_start=results["map"], seed=args.seed, progress_bar=False)
    results["nuts"] = run_nuts(model, problem.train, num_samples=args.nuts_samples, warmup_steps=args.nuts_warmup,
                               num_chains=args.chains, max_tree_depth=args.tree_depth, warm_start=results["map"],
                               seed=args.seed, progress_bar=False)
    predictions = {k: r.predict(test, num_samples=args.num_pred if k != "map" else 1) for k, r in results.items()}
    predictions["map"] = results["map"].predict(test, num_samples=args.num_pred)  # noise-only predictive
    scores = {k: score(p, test.y, test.mask, noise_scale=problem.noise_scale, h_true=test.h_true,
                       reference=predictions["nuts"]) for k, p in predictions.items()}
    print(f"chemical, R_hidden=({args.R_hidden},), {args.num_train} train / {args.num_test} test trajectories, "
          f"{args.num_times} times, seed {args.seed}; NUTS {args.chains} chains x {args.nuts_samples} draws "
          f"({args.nuts_warmup} warm-up, tree depth {args.tree_depth}); total {time.perf_counter() - t0:.0f} s")
    keys = ["rmse", "nll", "crps", "coverage_50", "coverage_90", "coverage_95", "width_90", "miscalibration_area",
            "energy_distance", "hidden_coverage_90"]
    print(f"{'method':<11}" + "".join(f"{k[:14]:>15}" for k in keys) + f"{'evals':>10}{'time_s':>9}")
    for k, s in scores.items():
        r = results[k]
        print(f"{k:<11}" + "".join(f"{s[key]:>15.4f}" for key in keys) + f"{r.num_model_evals:>10}{r.wall_time:>9.1f}")
    st = results["nuts"].sample_stats
    r_hat = max(float(d["r_hat"].max()) for k, d in results["nuts"].mcmc.diagnostics().items() if "r_hat" in d)
    print(f"NUTS: max split R-hat {r_hat:.2f} (a converged run is below 1.01), mean acceptance "
          f"{float(st['acceptance_rate'].mean()):.3f}, divergences {int(st['diverging'].sum())}, "
          f"step sizes {st['step_size'][:, -1].tolist()}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for k in ("autonormal", "nuts"):
            plot_trajectories(predictions[k], test, os.path.join(args.out, f"chemical_{k}_bands.png"),
                              output_names=problem.obs_names, title=f"chemical, {k}: test trajectories")
        plot_calibration(predictions, test.y, test.mask, os.path.join(args.out, "chemical_calibration.png"))
        idata = to_inference_data(results["nuts"], test, output_names=problem.obs_names)
        plot_weights(idata, ["R.1.bias", "R.1.weight"], os.path.join(args.out, "chemical_nuts_trace.png"),
                     os.path.join(args.out, "chemical_nuts_pair.png"))
        idata.to_netcdf(os.path.join(args.out, "chemical_nuts.nc"))
    print("RESULT " + " ".join(f"{k}_coverage_90={s['coverage_90']:.4f}" for k, s in scores.items())
          + " " + " ".join(f"{k}_nll={s['nll']:.4f}" for k, s in scores.items()) + f" nuts_max_rhat={r_hat:.3f}")
    return scores


if __name__ == "__main__":
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    main()
