"""Grey-box against the pure mechanistic model and the pure hierarchical NODE on new subjects, 4-fold CV.

Data sets: the vendored theophylline data (dose in mg), and a synthetic repeated-dose set simulated from an oral
model with Michaelis-Menten elimination (a nonlinearity the one-compartment backbone lacks): 24 subjects, 300 mg
every 12 h for 48 h, 8 ragged samples each, omega 0.3, additive noise 0.3 mg/L; and, as a correctly specified
control (``oral_synthetic``), the same design simulated from the one-compartment oral backbone itself.  Both go through the same path as
``pyro-node-uq compare --data FILE``: a NONMEM table, :func:`~pyro_node_uq.data.events_problem` (folds over
subjects; every sample of the fitted subjects is training data unless ``--time-fraction`` says otherwise) and, for
the mechanistic and grey-box models, :func:`~pyro_node_uq.data.structured_problem` with the one-compartment oral
backbone.

Models: ``mechanistic`` (no correction, closed form), ``greybox`` (the backbone plus structured_problem's 8-unit
correction: every subject's CL and ka corrected as functions of its concentrations, with a shrinking prior; ODE
solve; ``--set correction_target=rates`` gives the additive correction of the rates instead), ``node`` (the file's default hierarchical NODE), each with its default residual law
(``--noise`` sets one for all).  Each is fitted by MAP then
AutoNormal; the held-out subjects (new units, effects from the population) are scored by NLL, CRPS and the 90%
interval's coverage, per fold and pooled over folds (observation-weighted); CPU time is the process's.

    python benchmarks/greybox_cv.py [--datasets theophylline mm_synthetic] [--folds 4] [--models ...]
        [--correction-input amount|concentration] [--fold-list 0 2] [--set correction_prior=0.03]
        [--time-fraction 0.67]
"""
import argparse
import json
import time
from dataclasses import replace

import pandas as pd
import torch

from pyro_node_uq.data import events_problem, structured_problem
from pyro_node_uq.data.mechanistic import mechanistic_units
from pyro_node_uq.data.pk import theophylline_table
from pyro_node_uq.diagnostics import score
from pyro_node_uq.methods import run_autonormal, run_map

MM_TRUTH = {"Vmax": 40.0, "Km": 4.0, "V": 30.0, "ka": 1.5}
ORAL_TRUTH = {"CL": 3.0, "V": 30.0, "ka": 1.5}


def units_table(units):
    """A NONMEM table (``ID, TIME, DV, AMT, EVID, CMT``; the observed central compartment is CMT 1, a depot 2)."""
    rows = []
    for i in range(len(units)):
        d = units.doses
        for k in range(d.max_doses):
            if d.mask[i, k]:
                rows.append({"ID": i + 1, "TIME": float(d.time[i, k]), "DV": ".", "AMT": float(d.amount[i, k]),
                             "EVID": 1, "CMT": int(d.compartment[i, k]) + 1})
        for j in torch.nonzero(units.mask[i])[:, 0].tolist():
            rows.append({"ID": i + 1, "TIME": float(units.t[j]), "DV": float(units.y[i, j, 0]), "AMT": 0.0,
                         "EVID": 0, "CMT": 1})
    return pd.DataFrame(rows).sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False])


def dataset(name, seed=0):
    if name == "theophylline":
        return theophylline_table("mg")
    if name == "oral_synthetic":  # the backbone's own structure: a correctly specified control
        units = mechanistic_units("one_compartment_oral", ORAL_TRUTH, 0.3, 0.3, num_units=24, dose=300.0,
                                  dose_times=(0.0, 12.0, 24.0, 36.0), t_end=48.0, seed=seed)
        return units_table(units)
    units = mechanistic_units("michaelis_menten_oral", MM_TRUTH, 0.3, 0.3, num_units=24, dose=300.0,
                              dose_times=(0.0, 12.0, 24.0, 36.0), t_end=48.0, seed=seed)
    return units_table(units)


def problem_for(model, table, fold, folds, seed, correction_input=None, noise=None, options=None,
                time_fraction=1.0):
    p = events_problem(table, num_folds=folds, fold=fold, seed=seed, time_fraction=time_fraction)
    if model != "node":
        p = structured_problem(p, "one_compartment_oral", correction=(8,) if model == "greybox" else None)
        if model == "greybox" and correction_input is not None:
            p = replace(p, model_kwargs={**p.model_kwargs, "correction_input": correction_input})
        if model == "greybox" and options:
            p = replace(p, model_kwargs={**p.model_kwargs, **options})
    return p if noise is None else replace(p, model_kwargs={**p.model_kwargs, "noise": noise})


def run(model, table, fold, folds, args):
    p = problem_for(model, table, fold, folds, args.seed, args.correction_input, args.noise, dict(args.set),
                    args.time_fraction)
    m = p.default_model()
    clock, cpu = time.perf_counter(), time.process_time()
    start = run_map(m, p.train, num_steps=args.map_steps, progress_bar=False, seed=args.seed)
    fit = run_autonormal(m, p.train, warm_start=start, num_steps=args.vi_steps, num_particles=4,
                         progress_bar=False, elbo_particles=0, seed=args.seed)
    pred = fit.predict(p.test, num_samples=args.num_samples, seed=args.seed)
    s = score(pred, p.test.y, p.test.mask, noise_scale=m.noise_scale(fit.param_state, pred), noise=m.law.noise,
              df=m.law.df)
    n = int(p.test.mask.sum())
    return {"nll": s.get("nll"), "crps": s["crps"], "coverage_90": s["coverage_90"], "n": n,
            "seconds": round(time.perf_counter() - clock, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}


def _option(text):
    """``KEY=VALUE`` of ``--set``: the value as JSON (numbers, lists), else the string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["theophylline", "mm_synthetic"])
    ap.add_argument("--models", nargs="+", default=["mechanistic", "greybox", "node"])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--fold-list", type=int, nargs="+", default=None, help="run only these folds")
    ap.add_argument("--correction-input", choices=["amount", "concentration"], default=None,
                    help="what the grey-box correction reads (GreyBoxNODEModel's correction_input; default: "
                         "structured_problem's)")
    ap.add_argument("--noise", choices=["normal", "studentt"], default=None,
                    help="every model's residual law (default: each model's own: Student-t for the mechanistic and "
                         "grey-box models, Normal for the NODE)")
    ap.add_argument("--set", nargs="*", type=_option, default=[], metavar="KEY=VALUE",
                    help="further GreyBoxNODEModel options of the grey-box model, e.g. correction_prior=0.03 "
                         "(values read as JSON, else as strings)")
    ap.add_argument("--time-fraction", type=float, default=1.0,
                    help="fraction of each fitted subject's samples in the training data (default 1: all of them, "
                         "as a cross-validation over subjects fits them)")
    ap.add_argument("--map-steps", type=int, default=600)
    ap.add_argument("--vi-steps", type=int, default=300)
    ap.add_argument("--num-samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    table_rows = []
    for name in args.datasets:
        table = dataset(name, args.seed)
        for model in args.models:
            per_fold = []
            for fold in (args.fold_list if args.fold_list is not None else range(args.folds)):
                try:
                    r = run(model, table, fold, args.folds, args)
                except Exception as e:  # noqa: BLE001 - one failed fit is a row, not the end of the benchmark
                    r = {"error": f"{type(e).__name__}: {e}"}
                print(json.dumps({"dataset": name, "model": model, "fold": fold, **r}), flush=True)
                per_fold.append({"fold": fold, **r})
            ok = [r for r in per_fold if "error" not in r]
            n = sum(r["n"] for r in ok)
            pooled = {k: (sum(r[k] * r["n"] for r in ok) / n if n and all(r[k] is not None for r in ok) else None)
                      for k in ("nll", "crps", "coverage_90")}
            table_rows.append((name, model, per_fold, pooled, sum(r["cpu_seconds"] for r in ok)))
    f = lambda v: "n/a" if v is None else f"{v:.3f}"
    print("\n| data | model | fold | NLL | CRPS | cov90 | n | CPU [s] |\n|---|---|---|---|---|---|---|---|")
    for name, model, per_fold, pooled, secs in table_rows:
        for r in per_fold:
            fold = r["fold"]
            if "error" in r:
                print(f"| {name} | {model} | {fold} | {r['error']} | | | | |")
            else:
                print(f"| {name} | {model} | {fold} | {f(r['nll'])} | {f(r['crps'])} | {f(r['coverage_90'])} | "
                      f"{r['n']} | {r['cpu_seconds']:.0f} |")
        print(f"| {name} | {model} | pooled | {f(pooled['nll'])} | {f(pooled['crps'])} | "
              f"{f(pooled['coverage_90'])} | | {secs:.0f} |")


if __name__ == "__main__":
    main()
