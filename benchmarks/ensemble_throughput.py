"""Throughput of the vectorised NODE likelihood over weight particles (not a test).

On ``chemical``: time log p(y | w) and its gradient for P = 1, 8, 64 particles in ONE vectorised solve, and for
P = 64 as a Python loop over single-particle solves, in the same run.  Prints a table and a last line
``RESULT speedup_vs_loop_P64=<x> cost_ratio_P64_vs_P1=<y>`` (targets: x >= 20, y <= 3).

    python benchmarks/ensemble_throughput.py [--repeats 5] [--dtype float32]
"""
import argparse
import time

import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.distributions import NODETrajectory


def logp_and_grad(model, split, params):
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    d = NODETrajectory(model.R, model.Z, params, split.t, split.x, h0=model.init, scale=model.scale,
                       solver=model.solver, obs_dim=model.obs_dim)
    lp = d.log_prob(split.y).sum()
    lp.backward()
    return lp


def timed(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: no OpenMP spin-waits)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.set_default_dtype(dtype)
    problem = load_problem("chemical", dtype=dtype)
    model, split = problem.default_model(), problem.train
    model.init = model.init.to(dtype)
    gen = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=gen) / (s[-1] ** 0.5) for k, s in model.weight_shapes().items()}
    batched = lambda P: {k: v + 0.05 * torch.randn((P, 1) + v.shape, generator=gen) for k, v in base.items()}  # noqa

    rows = []
    for P in (1, 8, 64):
        params = batched(P)
        rows.append((f"vectorised P={P}", P, timed(lambda: logp_and_grad(model, split, params), args.repeats)))
    params = batched(64)
    singles = [{k: v[p, 0] for k, v in params.items()} for p in range(64)]
    loop = timed(lambda: [logp_and_grad(model, split, s) for s in singles], max(1, args.repeats // 2))
    rows.append(("python loop P=64", 64, loop))

    print(f"chemical: {len(split)} trajectories x {len(split.t)} times, R={model.R.sizes}, "
          f"solver={model.solver.method}, dtype={args.dtype}, threads={torch.get_num_threads()}")
    print(f"{'variant':<20} {'P':>4} {'time [ms]':>10} {'ms/particle':>12}")
    for name, P, sec in rows:
        print(f"{name:<20} {P:>4} {1e3 * sec:>10.2f} {1e3 * sec / P:>12.3f}")
    t1, t64 = rows[0][2], rows[2][2]
    print(f"RESULT speedup_vs_loop_P64={loop / t64:.1f} cost_ratio_P64_vs_P1={t64 / t1:.2f}")


if __name__ == "__main__":
    main()
