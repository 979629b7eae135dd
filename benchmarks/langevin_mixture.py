"""Multi-basin posteriors from several MAP basins: AutoLangevin fits pooled over a deep ensemble's members, and
AutoLangevinMixture (one guide, one component per member), against the single fits and the ensemble itself.

For each problem and method seed ``s`` it fits the ensemble's members (MAP, registered defaults, member seeds
``s .. s + M - 1``; member 0 is the MAP row of the comparison) and, per ``--kinds``, from each member:

    autonormal        the registered AutoNormal
    langevin_learned  the registered AutoLangevin (``langevin_learned``), from that AutoNormal
    langevin_map      AutoLangevin whose reference starts at the MAP point itself (std 3e-3, the mean moving in
                      units of it: ``warm_start_lr_scales``), no AutoNormal stage

and scores on the test split, for every pool size ``m`` in ``--pool``, the first ``m`` of them pooled with equal
weights (``100 // m`` predictive draws from each; pool size 1 is a single fit).  ``langevin_mixture`` is one
``run_langevin_mixture`` fit (registered defaults) whose components start at the first ``m`` MAP members.

    python benchmarks/langevin_mixture.py run --problems chemical duffing --seeds 0 1 2 --kinds map langevin_map \
        [--set KIND.KEY=JSON ...] --cache DIR --log FILE
    python benchmarks/langevin_mixture.py table FILE [FILE ...]

With ``--ensemble batched`` the pool of MAP fits is instead one ``run_ensemble`` fit (registered MAP options with
any ``--set map.KEY=...``, the members batched in one model, seeds ``s .. s + m - 1``), logged as kind ``map`` with
``"ensemble": "batched"``, and ``langevin_mixture`` starts from it; only the kinds ``map`` and ``langevin_mixture``
run in that mode.

A problem ``NAME@N`` is ``NAME`` with ``N`` training trajectories (sparse data), fitted with ``NAME``'s registered
options.

``run`` appends one JSON line per (problem, seed, kind, pool size) with the test scores and the CPU (process)
time of the fits pooled (each component's chain of fits: MAP, + AutoNormal, + AutoLangevin); fits are cached
under ``--cache`` by member seed (the pools of method seeds ``s`` and ``s + 1`` share members, as the comparison's
ensembles do).  ``table`` prints the means over seeds, with the CPU time over one AutoNormal fit's (its MAP start
included) where the logs hold AutoNormal fits of the same problem and seed.
"""
import argparse
import json
import math
import os
import pickle
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convergence import PROBLEMS, _problem, base_name

from pyro_node_uq.compare.scoring import score_result
from pyro_node_uq.infer import AutoLangevin
from pyro_node_uq.infer._pyro_compat import setup_prototype
from pyro_node_uq.methods import METHODS, run_ensemble, run_langevin_mixture
from pyro_node_uq.methods.common import fit_guide, init_loc, map_values
from pyro_node_uq.methods.result import MethodResult

#: kind -> the kind it starts from
KINDS = {"map": None, "autonormal": "map", "langevin_learned": "autonormal", "langevin_map": "map",
         "langevin_mixture": "map"}
#: kinds fitted once per pool (from the pool's MAP fits), not once per member
POOLED = ("langevin_mixture",)
#: AutoLangevin started at the MAP point itself (no AutoNormal stage), as the fit command's guide: options
LANGEVIN_MAP = {"init_scale": 3e-3, "num_iters": 300, "num_particles": 8, "num_steps": 10, "lr": 5e-3,
                "scaled_lr": True}


def run_langevin_map(model, split, *, warm_start, seed, init_scale, num_iters, num_particles, num_steps, lr,
                     scaled_lr, progress_bar=False):
    """AutoLangevin whose reference mean starts at the MAP fit ``warm_start`` with std ``init_scale``."""
    values = map_values(warm_start, derived=True)
    init = init_loc(model, seed, values)
    lr_scales = {}  # filled in once the guide exists (fit_svi reads them after guide_fn ran)

    def guide_fn(m):
        guide = AutoLangevin(m, num_steps=num_steps, init_loc_fn=init, init_scale=init_scale)
        if scaled_lr:
            setup_prototype(guide, *model.fit_args(split)[0], **model.fit_args(split)[1])
            lr_scales.update(guide.warm_start_lr_scales())
        return guide

    return fit_guide("langevin_map", model, guide_fn, split, num_steps=num_iters, lr=lr, num_particles=num_particles,
                     seed=seed, progress_bar=progress_bar, start=warm_start, start_values=values,
                     lr_scales=lr_scales)


def _timed(fn, *args):
    cpu = time.process_time()
    result = fn(*args)
    return result, time.process_time() - cpu


def _pooled(kind, fits, num_samples, seed):
    """A result holding ``num_samples // len(fits)`` draws of each fit as its chains (equal weights)."""
    per = max(1, num_samples // len(fits))
    draws = [f.posterior_samples(per, seed=seed + i) for i, f in enumerate(fits)]
    samples = {k: torch.stack([d[k] for d in draws]) for k in draws[0]}
    return MethodResult(name=f"{kind} x{len(fits)}", model=fits[0].model, samples=samples,
                        param_state=fits[0].param_state, train_split=fits[0].train_split)


def _fit(kind, model, problem, name, prev, seed, overrides):
    if kind == "langevin_map":
        opts = dict(LANGEVIN_MAP, **overrides)
        return run_langevin_map(model, problem.train, warm_start=prev, seed=seed, **opts)
    opts = dict(METHODS[kind].options(base_name(name)), **overrides)
    return METHODS[kind].runner(model, problem.train, warm_start=prev, seed=seed, progress_bar=False, **opts)


def _cached(path, fn):
    """``fn()``'s ``(result, CPU time)``, pickled at ``path`` (``None``: not cached) and read from there when it
    exists."""
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    out = _timed(fn)
    if path:
        with open(path, "wb") as f:
            pickle.dump(out, f)
    return out


def _ensemble_of(model, maps):
    """The MAP fits ``maps`` as a deep ensemble's result (member ``i`` as chain ``i``)."""
    values = [map_values(m) for m in maps]
    return MethodResult(name="ensemble", model=model, param_state=maps[0].param_state,
                        samples={k: torch.stack([v[k] for v in values])[:, None] for k in values[0]},
                        wall_time=sum(m.wall_time for m in maps),
                        num_model_evals=sum(m.num_model_evals for m in maps))


def _tag(overrides):
    """A file-name tag of option ``overrides`` (empty for none)."""
    return "".join(c if c.isalnum() else "-" for c in json.dumps(overrides, sort_keys=True)) if overrides else ""


def _mixture(name, model, problem, ensemble, seed, overrides, cache_dir, suffix=""):
    """``(fit, CPU time)`` of ``run_langevin_mixture`` started at the deep ensemble ``ensemble``."""
    tag = _tag(overrides)
    size = next(iter(ensemble.samples.values())).shape[0]
    cache = cache_dir and os.path.join(cache_dir, f"{name}_{seed}_mixture{size}{tag}{suffix}.pkl")
    opts = dict(METHODS["langevin_mixture"].options(base_name(name)), **overrides)
    return _cached(cache, lambda: run_langevin_mixture(model, problem.train, warm_start=ensemble, seed=seed,
                                                       progress_bar=False, **opts))


def _batched_ensemble(name, model, problem, seed, size, cache_dir, overrides=None):
    """``(fit, CPU time)`` of ``run_ensemble`` with the registered MAP options (and ``--set map.*`` overrides),
    members batched in one model."""
    cache = cache_dir and os.path.join(cache_dir, f"{name}_{seed}_ensemble{size}{_tag(overrides)}_batched.pkl")
    opts = dict(METHODS["map"].options(base_name(name)), **(overrides or {}))
    return _cached(cache, lambda: run_ensemble(model, problem.train, num_members=size, seed=seed, batched=True,
                                               progress_bar=False, **opts))


def _cache_name(problem, seed, kind, overrides):
    """A fit depends on its member seed, its kind and the options of its chain of kinds (not on the method seed:
    the pools of method seeds ``s`` and ``s + 1`` share members, as the ensembles of the comparison do)."""
    chain, opts = [], []
    while kind is not None:
        chain.append(kind)
        if overrides.get(kind):
            opts.append(json.dumps({kind: overrides[kind]}, sort_keys=True))
        kind = KINDS[kind]
    tag = "" if not opts else "_" + "".join(c if c.isalnum() else "-" for c in "".join(opts))
    return f"{problem}_{seed}_{chain[0]}{tag}.pkl"


def run(args):
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:  # "kind.key=value"
        key, value = item.split("=", 1)
        kind, k = key.split(".", 1)
        overrides.setdefault(kind, {})[k] = json.loads(value)
    needed = set()
    for kind in args.kinds:
        while kind is not None:
            needed.add(kind)
            kind = KINDS[kind]
    order = [k for k in KINDS if k in needed]
    batched = args.ensemble == "batched"
    if batched and not set(args.kinds) <= {"map", "langevin_mixture"}:
        raise SystemExit("--ensemble batched runs the kinds map and langevin_mixture only")
    if batched:
        order = []  # no per-member fits: the ensemble is one batched fit per pool size
    for seed in args.seeds:
        for name in args.problems:
            problem = _problem(name)
            model = problem.default_model()
            fits = {k: [] for k in order}
            cpu = {k: [] for k in order}
            for i in range(max(args.pool)):
                for kind in (k for k in order if k not in POOLED):
                    prev = fits[KINDS[kind]][i] if KINDS[kind] else None
                    cache = args.cache and os.path.join(args.cache, _cache_name(name, seed + i, kind, overrides))
                    if cache and os.path.exists(cache):
                        with open(cache, "rb") as f:
                            res, t = pickle.load(f)
                    else:
                        res, t = _timed(_fit, kind, model, problem, name, prev, seed + i, overrides.get(kind, {}))
                        if cache:
                            with open(cache, "wb") as f:
                                pickle.dump((res, t), f)
                    fits[kind].append(res)
                    cpu[kind].append(t)
            chain_cpu = {}
            for kind in (k for k in order if k not in POOLED):
                chain_cpu[kind] = [c + (chain_cpu[KINDS[kind]][i] if KINDS[kind] else 0.0)
                                   for i, c in enumerate(cpu[kind])]
            an_cpu = chain_cpu["autonormal"][0] if "autonormal" in chain_cpu else math.nan
            for kind in args.kinds:
                for m in args.pool:
                    cpu_time = None
                    if batched:
                        ensemble, t_ens = _batched_ensemble(name, model, problem, seed, m, args.cache,
                                                            overrides.get("map"))
                    elif kind in POOLED or kind == "map":
                        ensemble, t_ens = _ensemble_of(model, fits["map"][:m]), sum(chain_cpu["map"][:m])
                    if kind in POOLED:
                        res, t = _mixture(name, model, problem, ensemble, seed, overrides.get(kind, {}), args.cache,
                                          _tag(overrides.get("map")) + "_batched" if batched else "")
                        preds = {"test": res.predict(problem.test, num_samples=args.num_samples, seed=seed)}
                        cpu_time = t_ens + t
                    elif batched:  # the batched ensemble itself (kind map)
                        res, cpu_time = ensemble, t_ens
                        preds = {"test": res.predict(problem.test, num_samples=args.num_samples, seed=seed)}
                    elif kind == "map":
                        res = _pooled(kind, fits[kind][:m], m, seed)  # one draw each, resampled by predict
                        preds = {"test": res.predict(problem.test, num_samples=args.num_samples, seed=seed)}
                    else:
                        res = _pooled(kind, fits[kind][:m], args.num_samples, seed)
                        preds = {"test": res.predict(problem.test, num_samples=None, seed=seed)}
                    row = score_result(res, problem, preds, hidden=False)
                    record = {"label": args.label, "problem": name, "seed": seed, "kind": kind, "pool": m,
                              **{k: v for k, v in row.items() if k.startswith("test_")},
                              "cpu_time": cpu_time or sum(chain_cpu[kind][:m]), "cpu_autonormal": an_cpu,
                              "options": overrides.get(kind, {}), "ensemble": args.ensemble}
                    with open(args.log, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    print(json.dumps(record), flush=True)


def table(args):
    rows = [json.loads(line) for path in args.logs for line in open(path) if line.strip()]  # noqa: SIM115
    latest = {}  # the last row of each (problem, seed, kind, options, pool)
    for r in rows:
        opts = json.dumps(r.get("options", {}), sort_keys=True)
        kind = r["kind"] if r.get("ensemble", "sequential") == "sequential" else f"{r['kind']} ({r['ensemble']})"
        latest[(r["problem"], r["seed"], kind, opts, r["pool"])] = r
    groups = {}
    for (problem, _, kind, opts, pool), r in latest.items():
        kind = kind if opts == "{}" else f"{kind} {opts}"
        groups.setdefault((problem, kind, pool), []).append(r)
    autonormal = {}  # one AutoNormal fit's CPU time (its MAP included) by (problem, seed), wherever logged
    for r in rows:
        if math.isfinite(r["cpu_autonormal"]):
            autonormal[(r["problem"], r["seed"])] = r["cpu_autonormal"]
    print("| problem | pooled fits | seeds | NLL | CRPS | cov90 | CPU [s] | CPU / AutoNormal |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for key in sorted(groups, key=lambda k: (PROBLEMS.index(k[0]) if k[0] in PROBLEMS else 99, k[1], k[2])):
        g = groups[key]
        mean = {f: sum(r[f] for r in g) / len(g) for f in ("test_nll", "test_crps", "test_coverage_90", "cpu_time")}
        base = [autonormal.get((r["problem"], r["seed"]), math.nan) for r in g]
        ratio = sum(r["cpu_time"] for r in g) / sum(base)
        print(f"| {key[0]} | {key[1]} x{key[2]} | {len(g)} | {mean['test_nll']:.3f} | {mean['test_crps']:.4f} | "
              f"{mean['test_coverage_90']:.2f} | {mean['cpu_time']:.0f} | {ratio:.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--problems", nargs="+", default=["chemical", "duffing"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--pool", nargs="+", type=int, default=[1, 2, 3, 5], help="pool sizes (components)")
    r.add_argument("--num-samples", type=int, default=100, help="predictive draws per pooled result")
    r.add_argument("--kinds", nargs="+", choices=list(KINDS), default=["map", "autonormal", "langevin_learned"])
    r.add_argument("--set", nargs="*", default=[], metavar="KIND.KEY=JSON", help="option overrides")
    r.add_argument("--ensemble", choices=("sequential", "batched"), default="sequential",
                   help="the MAP pool: member fits one by one (cached per member), or one batched run_ensemble")
    r.add_argument("--label", default="default", help="names this run's option set in the log")
    r.add_argument("--cache", help="folder of pickled fits, reused across runs and method seeds by name (problem, "
                   "member seed, kind, options): empty it when the package or a problem's model changes")
    r.add_argument("--log", required=True)
    t = sub.add_parser("table")
    t.add_argument("logs", nargs="+")
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else table(args)


if __name__ == "__main__":
    main()
