"""Issue 17 must-shows on a unit problem: hierarchical vs population-only NODE, AutoNormal and AutoLangevin.

For each model (population-only ``effects=()`` and the problem's hierarchical model, with ``--hier`` options on
top) and method, prints test NLL, CRPS and 90% coverage on held-out units (``test``, population prediction) and
on the fitted units' last observations (``extrapolation``); for the hierarchical fits also the 90%-interval
coverage of the true random effects (synthetic problems) and the individual forecast of each held-out unit
conditioned on its first third of observations against the population forecast.  Ends with the table
(model x method x split).

    python benchmarks/hierarchical_pk.py --problem pk_repeated [--steps 800] [--out results.json]
    python benchmarks/hierarchical_pk.py --problem theophylline_events --hier '{"parameterization": "centred"}' \\
        --both '{"error_model": "combined", "prop_scale": "learned"}'
"""
import argparse
import json
import time

import torch
from eta_recovery import recovery

from pyro_node_uq.data import load_problem, split_by_time
from pyro_node_uq.diagnostics.metrics import score
from pyro_node_uq.infer import condition_effects, predict_units
from pyro_node_uq.methods import run_autonormal, run_langevin, run_map


def _scores(fit, pred, split):
    s = score(pred, split.y, split.mask, noise_scale=fit.model.noise_scale(fit.param_state, pred))
    return {k: round(float(s[k]), 4) for k in ("nll", "crps", "coverage_90", "rmse") if k in s}


def fit_methods(model, train, steps, seed=0, map_model=None):
    """MAP (of ``map_model``, default ``model``), then AutoNormal from it, then AutoLangevin from that: the fits
    the must-shows compare.  A centred hierarchical model takes its warm start from the non-centred one's MAP (a
    centred MAP collapses omega)."""
    mp = run_map(map_model or model, train, num_steps=steps, seed=seed, progress_bar=False)
    an = run_autonormal(model, train, num_steps=steps, warm_start=mp, seed=seed, progress_bar=False,
                        elbo_particles=0)
    la = run_langevin(model, train, warm_start=an, num_iters=steps // 2, num_steps=10, seed=seed,
                      progress_bar=False, elbo_particles=0)
    return {"autonormal": an, "langevin": la}


def run(problem, name, model, steps, seed, map_model=None):
    rows = []
    for method, fit in fit_methods(model, problem.train, steps, seed, map_model).items():
        row = {"model": name, "method": method, "wall_s": round(fit.wall_time, 1)}
        for split_name in ("test", "extrapolation"):
            split = getattr(problem, split_name)
            row[split_name] = _scores(fit, fit.predict(split, num_samples=200, seed=seed), split)
        if model.eta_dim and problem.train.eta_true is not None:
            row["eta"] = recovery(fit, problem.train)
        if model.eta_dim:
            early, late = split_by_time(problem.test, 1 / 3)
            pop = predict_units(fit, late, num_samples=100, seed=seed)
            ind = predict_units(fit, late, condition_effects(fit, early, num_samples=100, num_proposals=128, seed=seed))
            row["forecast_population"] = _scores(fit, pop, late)
            row["forecast_conditioned"] = _scores(fit, ind, late)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows):
    lines = [f"{'model':>12} {'method':>10} {'split':>13} {'NLL':>8} {'CRPS':>8} {'cov90':>6}"]
    for r in rows:
        for split in ("test", "extrapolation", "forecast_population", "forecast_conditioned"):
            if split in r:
                s = r[split]
                lines.append(f"{r['model']:>12} {r['method']:>10} {split:>13.13} {s['nll']:8.3f} {s['crps']:8.3f} "
                             f"{s['coverage_90']:6.2f}")
    for r in rows:
        if "eta" in r:
            e = r["eta"]
            lines.append(f"{r['model']:>12} {r['method']:>10}: eta 90% coverage {e['coverage_90']:.3f} "
                         f"{e['per_component']}, omega {e['omega']} (true effects' sd {e['sample_sd_true']})")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--problem", default="pk_repeated")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hier", default="{}", help="JSON options of the hierarchical model only")
    parser.add_argument("--both", default="{}", help="JSON options of both models")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = load_problem(args.problem, dtype=torch.float64)
    both, hier = json.loads(args.both), json.loads(args.hier)
    hier["effects"] = tuple(hier.get("effects", problem.model_kwargs["effects"]))
    start, rows = time.time(), []
    rows += run(problem, "population", problem.default_model(**both, effects=(), covariate_dim=0), args.steps,
                args.seed)
    model = problem.default_model(**{**both, **hier})
    map_model = problem.default_model(**{**both, **hier, "parameterization": "noncentred"})
    rows += run(problem, "hierarchical", model, args.steps, args.seed, map_model)
    print(table(rows))
    print(f"total {time.time() - start:.0f} s", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
