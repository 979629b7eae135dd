"""AutoLangevin against AutoNormal on ``chemical`` and ``elastoplastic`` (not a test).

Per problem: MAP -> AutoNormal, then AutoLangevin for each score mode started at that AutoNormal fit; each scored
on the test trajectories (path ELBO, mixture NLL, CRPS, 90% coverage and width).  NUTS is not run here: the default
NODEs have 259 / 219 weights, above ``run_nuts``'s limit, and shorter NUTS runs on smaller NODEs did not converge
on 2 cores (see benchmarks/baselines_chemical.py).  Last line: ``RESULT <problem>_<method>_nll=... ...``.

    python benchmarks/langevin_quality.py [--problems chemical,elastoplastic] [--iters 400] [--train 8]
"""
import argparse
import time

import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import score
from pyro_node_uq.infer import run_autonormal, run_langevin


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="chemical,elastoplastic")
    ap.add_argument("--modes", default="learned,hybrid,exact")
    ap.add_argument("--iters", type=int, default=400, help="AutoLangevin iterations")
    ap.add_argument("--vi-steps", type=int, default=1000, help="MAP and AutoNormal steps")
    ap.add_argument("--train", type=int, default=8, help="training trajectories")
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    for name in args.problems.split(","):
        problem = load_problem(name, dtype=torch.float32, num_train=args.train, num_test=8)
        model, test = problem.default_model(), problem.test
        start = time.perf_counter()
        an = run_autonormal(model, problem.train, num_steps=args.vi_steps, map_steps=args.vi_steps,
                            progress_bar=False)
        fits = [an]
        for mode in args.modes.split(","):
            fits.append(run_langevin(model, problem.train, score=mode, num_iters=args.iters, autonormal_result=an,
                                     progress_bar=False, exact_weight_init=0.01 if mode == "exact" else None))
        print(f"\n{name}: {len(problem.train)} train / {len(test)} test trajectories, "
              f"{time.perf_counter() - start:.0f} s in all")
        print(f"{'method':<18} {'ELBO':>10} {'NLL':>8} {'CRPS':>8} {'cov90':>6} {'width90':>8} {'evals':>8} {'s':>6}")
        for res in fits:
            pred = res.predict(test, num_samples=args.samples)
            s = score(pred, test.y, noise_scale=problem.noise_scale)
            print(f"{res.name:<18} {res.elbo:>10.1f} {s['nll']:>8.3f} {s['crps']:>8.4f} {s['coverage_90']:>6.3f} "
                  f"{s['width_90']:>8.4f} {res.num_model_evals:>8d} {res.wall_time:>6.0f}")
            results.append(f"{name}_{res.name}_nll={s['nll']:.3f} {name}_{res.name}_cov90={s['coverage_90']:.3f}")
    print("RESULT " + " ".join(results))


if __name__ == "__main__":
    main()
