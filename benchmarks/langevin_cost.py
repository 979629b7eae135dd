"""Per-step cost of AutoLangevin against AutoNormal on ``chemical`` (not a test).

One SVI step (vectorised ELBO with P = 64 particles, forward and backward) of AutoLangevin with K = 10 chain
steps, for each score mode, over one step of AutoNormal with P = 64, timed in the same run.  Last line:
``RESULT learned_over_autonormal=<x> hybrid_over_autonormal=<y> exact_over_autonormal=<z>``.

    python benchmarks/langevin_cost.py [--particles 64] [--steps 10] [--repeats 5]
"""
import argparse
import time

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import AutoLangevin


def step_time(model, guide, split, particles, repeats):
    pyro.clear_param_store()
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-4}), elbo)
    svi.step(*split.args)  # set-up and warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        svi.step(*split.args)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="chain length K")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    problem = load_problem("chemical", dtype=torch.float32)
    model, split = problem.default_model(), problem.train
    init = model.init_loc_fn(0)
    rows = [("AutoNormal", step_time(model, AutoNormal(model, init_loc_fn=init, init_scale=0.01), split,
                                      args.particles, args.repeats))]
    for score in ("learned", "exact", "hybrid"):
        guide = AutoLangevin(model, num_steps=args.steps, score=score, init_loc_fn=init, init_scale=0.01,
                             exact_weight_init=0.01 if score == "exact" else None)
        rows.append((f"AutoLangevin {score}", step_time(model, guide, split, args.particles, args.repeats)))
    base = rows[0][1]
    print(f"chemical: {len(split)} trajectories x {len(split.t)} times, {args.particles} particles, "
          f"K={args.steps}, threads={torch.get_num_threads()}")
    print(f"{'guide':<22} {'s/step':>8} {'x AutoNormal':>13}")
    for name, sec in rows:
        print(f"{name:<22} {sec:>8.3f} {sec / base:>13.2f}")
    r = {name.split()[-1]: sec / base for name, sec in rows[1:]}
    print(f"RESULT learned_over_autonormal={r['learned']:.2f} hybrid_over_autonormal={r['hybrid']:.2f} "
          f"exact_over_autonormal={r['exact']:.2f}")


if __name__ == "__main__":
    main()
