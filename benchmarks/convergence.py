"""Warm starts and convergence-aware fitting against the previous fixed-budget defaults, method by method.

MAP and the registered methods started from it (``--methods``; default MAP and AutoNormal), each with its registered
start, on the shipped trajectory problems and on two simulated processes (``benchmarks/simulated_processes.py``),
several method seeds each.

    python benchmarks/convergence.py run --config today|new [--problems ...] [--seeds 0 1 2 3 4]
        [--methods map autonormal ...] --log FILE
    python benchmarks/convergence.py run --config LABEL --set METHOD.KEY=JSON ... --log FILE   (a variant of new)
    python benchmarks/convergence.py table FILE [FILE ...] [--base today --new new]

``run`` appends one JSON line per (config, problem, seed, method) to ``--log`` (so a long grid can run in pieces,
in the background); ``table`` prints, per problem and method, the mean and spread (standard deviation) of test NLL
over the seeds both configurations have, the new configuration's CRPS and 90% coverage, and the total CPU time of
each configuration's fits (each method's without the fit it started from, which has its own row), with the
new/today ratios.

``today`` is the previous fixed budget (MAP 800 steps from one Glorot start with a tenfold learning-rate decay,
AutoNormal 500 steps x 8 particles, loop counts scaled by the registry's per-problem cost), without early stopping
or multi-start; run it with the previous package version on ``PYTHONPATH`` (options it lacks are not passed).
``new`` is the registry's current options.  CPU (process) time is compared, since on a shared machine wall time
measures the load.
"""
import argparse
import inspect
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simulated_processes import SIMULATED

from pyro_node_uq.compare.context import RunContext
from pyro_node_uq.compare.scoring import score_result
from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import METHODS
from pyro_node_uq.methods.registry import PROBLEM_COST

PROBLEMS = ("chemical", "viscoelastic", "elastoplastic", "duffing", "fed_dimer")
TODAY = {"map": {"num_steps": 800}, "autonormal": {"num_steps": 500, "num_particles": 8}}
#: options that switch the new fitting off, passed where the runner has them (the previous code has none)
TODAY_OFF = {"num_starts": 1, "stop_rtol": 0.0}


def _problem(name, seed=0):
    """A problem by name; ``NAME@N`` is ``NAME`` with ``N`` training trajectories (sparse data)."""
    base, _, num_train = name.partition("@")
    kwargs = {"num_train": int(num_train)} if num_train else {}
    return SIMULATED[base](seed=seed, **kwargs) if base in SIMULATED else load_problem(base, seed=seed, **kwargs)


def base_name(name):
    """The registered problem behind ``name`` (``NAME@N`` -> ``NAME``), whose method options apply."""
    return name.partition("@")[0]


def _options(config, method, problem, overrides=()):
    if config != "today":
        opts = METHODS[method].options(base_name(problem))
        for item in overrides:  # "method.key=value" (a label other than "new" names such a variant)
            key, value = item.split("=", 1)
            m, k = key.split(".", 1)
            if m == method:
                opts[k] = json.loads(value)
        return opts
    if method not in TODAY:  # the previous package's registry (on PYTHONPATH) holds today's defaults
        opts = METHODS[method].options(base_name(problem))
    else:
        factor = PROBLEM_COST.get(base_name(problem), 1.0)
        opts = {k: max(1, int(v * factor)) if k == "num_steps" else v for k, v in TODAY[method].items()}
    accepted = inspect.signature(METHODS[method].runner).parameters
    opts.update({k: v for k, v in TODAY_OFF.items() if k in accepted})
    return opts


def run(args):
    torch.set_num_threads(1)
    done = set()
    if os.path.exists(args.log):  # resume: what is logged already is not run again (MAP reruns as a start)
        done = {(r["problem"], r["seed"], r["method"]) for r in map(json.loads, open(args.log))  # noqa: SIM115
                if r["config"] == args.config}
    problems = {name: _problem(name) for name in args.problems}
    for seed in args.seeds:  # seeds outside: a run cut short still covers every problem
        for name, problem in problems.items():
            methods = [m for m in args.methods if (name, seed, m) not in done]
            if not methods:
                continue
            ctx = RunContext(problem, seed=seed, progress_bar=False,
                             options={m: _options(args.config, m, name, args.set) for m in METHODS})
            for method in methods:
                if METHODS[method].start:  # fitted (once, cached) before the clock starts: not this row's cost
                    ctx.fit(METHODS[method].start)
                clock, cpu = time.perf_counter(), time.process_time()
                result = ctx.fit(method)
                fit_time, cpu_time = time.perf_counter() - clock, time.process_time() - cpu
                preds = {"test": result.predict(problem.test, num_samples=args.num_samples, seed=seed)}
                row = score_result(result, problem, preds, hidden=False)
                opts = ctx.options[method]
                record = {"config": args.config, "problem": name, "seed": seed, "method": method,
                          **{k: v for k, v in row.items() if k.startswith("test_")},
                          "wall_time": fit_time, "cpu_time": cpu_time,
                          "converged": getattr(result, "converged", None), "steps": len(result.losses),
                          "options": {k: v for k, v in opts.items() if isinstance(v, (int, float, str))}}
                with open(args.log, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)


def _stats(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / max(n - 1, 1))
    return mean, sd, max(values) - min(values)


def table(args):
    rows = [json.loads(line) for path in args.logs for line in open(path) if line.strip()]  # noqa: SIM115
    data = {}
    for r in rows:
        data.setdefault((r["problem"], r["method"], r["config"]), {})[r["seed"]] = r
    base, new = args.base, args.new
    problems = [p for p in PROBLEMS if any(k[0] == p for k in data)]
    methods = sorted({k[1] for k in data}, key=lambda m: (m != "map", m))
    print(f"| problem | method | seeds | NLL mean {base} | NLL mean {new} | NLL sd {base} | NLL sd {new} | sd ratio | "
          f"CRPS {new} | cov90 {new} | CPU {base} [s] | CPU {new} [s] | CPU ratio | converged ({new}) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals = {base: 0.0, new: 0.0}
    for p in problems:
        for m in methods:
            t, n = data.get((p, m, base), {}), data.get((p, m, new), {})
            seeds = sorted(set(t) & set(n))
            if not seeds:
                continue
            st = _stats([t[s]["test_nll"] for s in seeds])
            sn = _stats([n[s]["test_nll"] for s in seeds])
            crps = _stats([n[s].get("test_crps", math.nan) for s in seeds])[0]
            cov = _stats([n[s].get("test_coverage_90", math.nan) for s in seeds])[0]
            wt, wn = sum(t[s]["cpu_time"] for s in seeds), sum(n[s]["cpu_time"] for s in seeds)
            conv = sum(bool(n[s]["converged"]) for s in seeds)
            totals[base] += wt
            totals[new] += wn
            ratio = sn[1] / st[1] if st[1] else math.nan
            print(f"| {p} | {m} | {len(seeds)} | {st[0]:.3f} | {sn[0]:.3f} | {st[1]:.3f} | {sn[1]:.3f} | "
                  f"{ratio:.2f} | {crps:.4f} | {cov:.2f} | {wt:.0f} | {wn:.0f} | {wn / wt:.2f} | {conv}/{len(seeds)} |")
    if totals[base]:
        print(f"\ntotal fitting CPU time (process time: the machine is shared, so wall times are not comparable): "
              f"{base} {totals[base]:.0f} s, {new} {totals[new]:.0f} s, ratio {totals[new] / totals[base]:.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--config", required=True, help="today, new, or a label for new with --set overrides")
    r.add_argument("--set", nargs="*", default=[], metavar="METHOD.KEY=JSON", help="option overrides")
    r.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    r.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["map", "autonormal"])
    r.add_argument("--num-samples", type=int, default=100, help="predictive draws per method")
    r.add_argument("--log", required=True)
    t = sub.add_parser("table")
    t.add_argument("logs", nargs="+")
    t.add_argument("--base", default="today", help="the configuration compared against (default: today)")
    t.add_argument("--new", default="new", help="the configuration compared (default: new)")
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else table(args)


if __name__ == "__main__":
    main()
