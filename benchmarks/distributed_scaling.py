"""Time per data-parallel SVI step over 1 and 2 processes on a problem with 256 training trajectories.

Each configuration runs in freshly spawned processes joined by torch.distributed (gloo on CPU; ``--backend nccl``
with one GPU per process); the 1- and 2-process runs alternate for ``--rounds`` rounds and the medians are compared,
so a machine shared with other work slows both alike.  The speed-up is bounded by the cores: on a 2-core machine
expect at most 2x, less when other jobs share the cores.

    python benchmarks/distributed_scaling.py [--num-train 256] [--steps 6] [--rounds 2] [--processes 1,2]

Last line: ``RESULT key=value ...`` with the median seconds per step of each process count and the speed-up.
"""
import argparse
import os
import statistics
import time

import pyro
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer.distributed import DataParallelSVI, get_world_size, spawn


def time_steps(num_train, steps, warmup, particles):
    """Seconds per SVI step (median over ``steps`` after ``warmup``) of this process group."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    problem = load_problem("chemical", num_train=num_train, seed=0)
    model = problem.default_model()
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0), init_scale=0.05)
    svi = DataParallelSVI(model, guide, pyro.optim.ClippedAdam({"lr": 1e-2}),
                          Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1))
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        svi.step(*problem.train.args, **problem.train.kwargs)
        times.append(time.perf_counter() - start)
    return {"world_size": get_world_size(), "per_step": statistics.median(times[warmup:])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-train", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps per run")
    ap.add_argument("--particles", type=int, default=4, help="vectorised ELBO particles")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of every process count")
    ap.add_argument("--processes", default="1,2", help="process counts to compare; the first is the baseline")
    ap.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    args = ap.parse_args()
    counts = [int(p) for p in args.processes.split(",")]
    print(f"chemical, {args.num_train} training trajectories, AutoNormal, {args.particles} particles; "
          f"{os.cpu_count()} CPU cores (shared with other work: timings are noisy), backend {args.backend}")
    per_step = {p: [] for p in counts}
    for r in range(args.rounds):
        for p in counts:
            result = spawn(time_steps, p, args.num_train, args.steps, args.warmup, args.particles,
                           backend=args.backend, timeout=1800)[0]
            per_step[p].append(result["per_step"])
            print(f"round {r}: {p} process(es): {result['per_step']:.3f} s/step")
    base = statistics.median(per_step[counts[0]])
    fields = []
    for p in counts:
        median = statistics.median(per_step[p])
        print(f"{p} process(es): median {median:.3f} s/step, speed-up x{base / median:.2f} over {counts[0]}")
        fields += [f"s_per_step_{p}={median:.4f}", f"speedup_{p}={base / median:.3f}"]
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    main()
