"""Issue 17 must-shows on a unit problem: hierarchical vs population-only NODE, AutoNormal and AutoLangevin.

For each model (population-only ``effects=()`` and the problem's hierarchical model, with ``--hier`` options on
top) and method, prints test NLL, CRPS and 90% coverage on held-out units (``test``, population prediction) and
on the fitted units' last observations (``extrapolation``); for the hierarchical fits also the 90%-interval
coverage of the true random effects (synthetic problems) and the individual forecast of each held-out unit
conditioned on its first third of observations against the population forecast.  Ends with the table
(model x method x split).

With ``--folds K`` the held-out units are scored by K-fold cross-validation over units
(:func:`~pyro_node_uq.data.unit_folds`: every unit held out once, the models refitted per fold): NLL, CRPS and
coverage pooled over all held-out units' observations (and over every fold's later observations), with the
per-fold scores and each fit's omega, noise scale and spread of the fitted units' posterior mean effects.

With ``--data-seeds S1 S2 ...`` (``pk_repeated``: independent data sets) the scores are pooled over the data
sets in the same way.  On ``pk_repeated`` a row ``true population`` scores the data-generating population's own
predictive of the new units (:func:`~pyro_node_uq.data.pk.pk_population_predictive`): a data set's 10 new units
share their effects, so even that covers 0.65-0.99 of their observations from seed to seed; compare the methods
with it, pooled over data sets.

    python benchmarks/hierarchical_pk.py --problem pk_repeated [--steps 800] [--out results.json]
    python benchmarks/hierarchical_pk.py --problem pk_repeated --data-seeds 0 1 2 3 4 5 --models hierarchical
    python benchmarks/hierarchical_pk.py --problem theophylline_events --folds 4 \\
        --hier '{"parameterization": "centred"}'
    python benchmarks/hierarchical_pk.py --problem theophylline_events --hier '{"parameterization": "centred"}' \\
        --both '{"error_model": "combined", "prop_scale": "learned"}'
"""
import argparse
import json
import time

import pyro
import torch
from eta_recovery import recovery

from pyro_node_uq.data import load_problem, split_by_time
from pyro_node_uq.data.pk import pk_population_predictive
from pyro_node_uq.diagnostics.metrics import score
from pyro_node_uq.methods import (
    condition_effects,
    predict_units,
    run_autonormal,
    run_langevin,
    run_map,
)
from pyro_node_uq.utils.seeding import param_scope

METRICS = ("nll", "crps", "coverage_90", "rmse")


def _scores(fit, pred, split):
    """Scores, the number of observations ``n``, and ``z2``: the mean squared error of the predictive mean over
    the predictive variance (1 when the bands' width matches the errors; above 1: too narrow)."""
    s = score(pred, split.y, split.mask, noise_scale=fit.model.noise_scale(fit.param_state, pred))
    obs, m = pred["obs"], split.mask
    z2 = ((split.y - obs.mean(0)).pow(2) / obs.var(0))[..., 0][m].mean()
    return {**{k: round(float(s[k]), 4) for k in METRICS if k in s}, "z2": round(float(z2), 3), "n": int(m.sum())}


def _fitted(fit, train):
    """The fit's noise scale and omega (learned: the point estimate; latent: posterior mean) and the sd over the
    fitted units of their posterior mean effects (which omega should match when the units' data pin them down)."""
    r = lambda v: [round(float(x), 3) for x in torch.as_tensor(v).reshape(-1)]
    out = {}
    samples = fit.posterior_samples(200)
    with param_scope(fit.param_state):
        store = pyro.get_param_store()
        for name in ("sigma", "omega"):
            if name in store:
                out[name] = r(store[name].detach())
            elif name in samples:
                out[name] = r(samples[name].mean(0))
    if getattr(fit.model, "eta_dim", 0):
        eta = fit.predict(train, num_samples=200, sites=("eta",))["eta"].reshape(200, len(train), -1)
        out["eta_mean_sd"] = r(eta.mean(0).std(0))
        out["eta_post_sd"] = r(eta.std(0).mean(0))
    return out


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


def run(problem, name, model, steps, seed, map_model=None, forecast=True):
    rows = []
    for method, fit in fit_methods(model, problem.train, steps, seed, map_model).items():
        row = {"model": name, "method": method, "wall_s": round(fit.wall_time, 1), **_fitted(fit, problem.train)}
        for split_name in ("test", "extrapolation"):
            split = getattr(problem, split_name)
            pred = fit.predict(split, num_samples=200, seed=seed)
            row[split_name] = _scores(fit, pred, split)
            row[split_name + "_per_unit"] = {  # NLL and coverage of each unit
                int(u): {k: v for k, v in _scores(fit, {s: p[:, i:i + 1] for s, p in pred.items() if p.dim() == 4},
                                                  split.select([i])).items() if k in ("nll", "coverage_90")}
                for i, u in enumerate(split.ids)}
        if model.eta_dim and problem.train.eta_true is not None:
            row["eta"] = recovery(fit, problem.train)
        if model.eta_dim and forecast:
            early, late = split_by_time(problem.test, 1 / 3)
            pop = predict_units(fit, late, num_samples=100, seed=seed)
            ind = predict_units(fit, late, condition_effects(fit, early, num_samples=100, num_proposals=128, seed=seed))
            row["forecast_population"] = _scores(fit, pop, late)
            row["forecast_conditioned"] = _scores(fit, ind, late)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def compare(problem, both, hier, steps, seed, forecast=True, models=("population", "hierarchical")):
    """Population-only and hierarchical model (``hier`` options on top of the problem's), each fitted with
    :func:`fit_methods`; the rows of :func:`run`."""
    hier = dict(hier, effects=tuple(hier.get("effects", problem.model_kwargs["effects"])))
    rows = []
    if "population" in models:
        rows = run(problem, "population", problem.default_model(**both, effects=(), covariate_dim=0), steps, seed,
                   forecast=forecast)
    if "hierarchical" not in models:
        return rows
    model = problem.default_model(**{**both, **hier})
    map_model = problem.default_model(**{**both, **hier, "parameterization": "noncentred"})
    return rows + run(problem, "hierarchical", model, steps, seed, map_model, forecast=forecast)


def true_population(problem):
    """The row of ``pk_repeated``'s data-generating population (new units only)."""
    pred = pk_population_predictive(problem.test, noise=problem.noise_scale, num_samples=2000)
    s = score(pred, problem.test.y, problem.test.mask, noise_scale=problem.noise_scale)
    return {"model": "true population", "method": "-", "test": {
        **{k: round(float(s[k]), 4) for k in METRICS}, "z2": float("nan"), "n": int(problem.test.mask.sum())}}


def pooled(rows):
    """One row per model and method: each split's scores averaged over the folds' observations (per-entry means
    weighted by each fold's number of observations, i.e. the scores of all held-out observations together)."""
    out = {}
    for r in rows:
        p = out.setdefault((r["model"], r["method"]), {"model": r["model"], "method": r["method"]})
        for split in ("test", "extrapolation"):
            if split not in r:
                continue
            acc = p.setdefault(split, {k: 0.0 for k in (*METRICS, "z2", "n")})
            for k in (*METRICS, "z2"):
                acc[k] += r[split].get(k, float("nan")) * r[split]["n"]
            acc["n"] += r[split]["n"]
    for p in out.values():
        for split in ("test", "extrapolation"):
            if split not in p:
                continue
            n = int(p[split]["n"])
            p[split] = {**{k: v / n for k, v in p[split].items() if k != "n"}, "n": n}
    return list(out.values())


def table(rows):
    lines = [(f"{'fold':>4} {'model':>12} {'method':>10} {'split':>13} {'NLL':>8} {'CRPS':>8} {'cov90':>6} {'z2':>6} "
             f"{'n':>4}")]
    for r in rows:
        for split in ("test", "extrapolation", "forecast_population", "forecast_conditioned"):
            if split in r:
                s = r[split]
                lines.append(f"{r.get('fold', ''):>4} {r['model']:>12} {r['method']:>10} {split:>13.13} "
                             f"{s['nll']:8.3f} {s['crps']:8.3f} {s['coverage_90']:6.2f} {s.get('z2', float('nan')):6.2f} {s['n']:4d}")
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
    parser.add_argument("--folds", type=int, default=None, help="K-fold cross-validation over units")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=None,
                        help="problem seeds (pk_repeated: data sets), scores pooled over them")
    parser.add_argument("--models", nargs="+", default=["population", "hierarchical"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    both, hier = json.loads(args.both), json.loads(args.hier)
    start, rows = time.time(), []
    data_seeds = args.data_seeds or [None]
    for data_seed in data_seeds:
        for fold in range(args.folds or 1):
            options = {} if data_seed is None else {"seed": data_seed}
            if args.folds:
                options.update(num_folds=args.folds, fold=fold)
            problem = load_problem(args.problem, dtype=torch.float64, **options)
            if args.folds:
                print(f"fold {fold}: held out {problem.test.ids.tolist()}", flush=True)
            fold_rows = compare(problem, both, hier, args.steps, args.seed, not args.folds, args.models)
            if problem.name == "pk_repeated":
                fold_rows.append(true_population(problem))
            key = fold if data_seed is None else f"{data_seed}/{fold}" if args.folds else data_seed
            rows += [dict(r, fold=key) for r in fold_rows]
    print(table(rows))
    if args.folds or args.data_seeds:
        print(f"pooled over {len(data_seeds)} data set(s) x {args.folds or 1} fold(s):\n{table(pooled(rows))}")
    print(f"total {time.time() - start:.0f} s", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
