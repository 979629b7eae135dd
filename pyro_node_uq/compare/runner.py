"""``run_comparison``: run methods side by side on one problem with one seed, score them alike and write the
table, one InferenceData netCDF per method, the figures and ``report.md``.

A method that fails or does not apply is recorded in the table with its status and reason and the run goes on.
Every file is written to a temporary sibling and renamed, so a failure never leaves a half-written file or
replaces an earlier run's file with a broken one.
"""
import logging
import os
import time
import traceback

import torch
from tqdm.auto import tqdm

from ..diagnostics import to_inference_data
from ..infer.ltau.recorder import atomic_save
from . import figures
from .context import MethodSkipped, RunContext
from .methods import METHODS, resolve_methods
from .report import markdown_tables, write_csv, write_report, write_text
from .scoring import hidden_comparable, score_result

__all__ = ["run_comparison"]

log = logging.getLogger(__name__)
SPLITS = ("test", "extrapolation")


def _summary(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _write_tables(rows, out):
    write_csv(rows, os.path.join(out, "table.csv"))
    write_text(markdown_tables(rows), os.path.join(out, "table.md"))


def _write_idata(result, problem, path, num_samples):
    idata = to_inference_data(result, problem.test, num_samples=num_samples, num_chains=4,
                              output_names=problem.obs_names, input_names=problem.input_names or None)
    atomic_save(path, lambda tmp: idata.to_netcdf(tmp))


def run_comparison(problem, methods=None, out="results", quick=False, seed=0, progress_bar=True, num_samples=200,
                   overrides=None, idata_samples=200):
    """Run ``methods`` on ``problem`` and write the comparison into ``out``.

    :param problem: a :class:`~pyro_node_uq.data.Problem`.
    :param methods: method names (see :data:`~pyro_node_uq.compare.METHODS`), or ``None`` for all.
    :param str out: output directory (created): ``table.csv``, ``table.md``, ``report.md``, ``idata/<method>.nc``,
        ``figures/*.png``, ``logs/<method>.log`` (tracebacks of failed methods).
    :param bool quick: each method's quick options (a smoke run).
    :param int seed: seed of every fit and prediction.
    :param bool progress_bar: show tqdm bars.
    :param int num_samples: posterior predictive draws per method and split for the scores.
    :param dict overrides: method name -> options that replace the registry's.
    :param int idata_samples: draws of guide-based methods in the InferenceData (a multiple of 4 chains).
    :returns: the table rows (one dict per method, with ``method``, ``status``, scores and ``note``).

    Example::

        >>> import tempfile
        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=3, num_test=2, num_extrapolation=2, num_times=11)
        >>> rows = run_comparison(problem, ["map", "nuts"], out=tempfile.mkdtemp(), quick=True, num_samples=4,
        ...                       overrides={"map": {"num_steps": 3}}, idata_samples=4, progress_bar=False)
        >>> [(r["method"], r["status"]) for r in rows]
        [('map', 'ok'), ('nuts', 'ok')]
    """
    start = time.perf_counter()
    selected = resolve_methods(methods)
    overrides = overrides or {}
    for name in overrides:
        if name not in METHODS:
            raise ValueError(f"overrides: unknown method {name!r}; registered methods are {sorted(METHODS)}")
    for sub in ("idata", "figures", "logs"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    ctx = RunContext(problem, seed=seed, quick=quick, progress_bar=progress_bar)
    ctx.options = {m.name: m.options(problem.name, quick, overrides.get(m.name)) for m in METHODS.values()}
    hidden, reason = hidden_comparable(ctx.model, problem)
    ctx.note("*", f"hidden-state scores: {'yes' if hidden else 'skipped'}: {reason}")
    rows, predictions, figs = [], {}, []
    bar = tqdm(selected, desc="compare", disable=not progress_bar)
    for method in bar:
        bar.set_postfix(method=method.name)
        row = {"method": method.name, "status": "ok"}
        try:
            result = method.runner(ctx, **ctx.options[method.name])
            preds = {}
            if method.kind == "posterior":
                preds = {s: {k: v.detach() for k, v in result.predict(getattr(problem, s), num_samples=num_samples,
                                                                       seed=seed).items()} for s in SPLITS}
            row.update(score_result(result, problem, preds, hidden=hidden))
        except MethodSkipped as e:
            row.update(status="skipped", note=str(e))
            rows.append(row)
            _write_tables(rows, out)
            continue
        except Exception as e:  # one method's failure must not end the comparison
            row.update(status="failed", note=_summary(e) + f" (traceback: logs/{method.name}.log)")
            write_text(traceback.format_exc(), os.path.join(out, "logs", f"{method.name}.log"))
            tqdm.write(f"compare: {method.name} failed: {_summary(e)}")
            rows.append(row)
            _write_tables(rows, out)
            continue
        rows.append(row)
        if preds:
            predictions[method.name] = preds
            for s in SPLITS:
                rel = f"figures/bands_{method.name}_{s}.png"
                try:
                    figures.plot_bands(method.name, preds[s], getattr(problem, s), s, problem, os.path.join(out, rel))
                    figs.append((f"{method.name}: predictive bands, {s}", rel))
                except Exception as e:
                    ctx.note(method.name, f"band plot on {s} failed: {_summary(e)}")
            try:
                _write_idata(result, problem, os.path.join(out, "idata", f"{method.name}.nc"), idata_samples)
            except Exception as e:
                ctx.note(method.name, f"InferenceData not written: {_summary(e)}")
        _write_tables(rows, out)
    figs += _summary_figures(rows, predictions, problem, out, hidden, ctx)
    config = {"problem": problem.name, "seed": seed, "quick": quick, "predictive draws per method": num_samples,
              "dtype": str(problem.train.y.dtype), "torch threads": torch.get_num_threads(),
              "total wall time [s]": round(time.perf_counter() - start, 1)}
    write_report(os.path.join(out, "report.md"), problem, rows, figs, selected, ctx, config)
    return rows


def _summary_figures(rows, predictions, problem, out, hidden, ctx):
    figs = []
    jobs = []
    if predictions:
        for s in SPLITS:
            split = getattr(problem, s)
            jobs.append((f"calibration on {s}", f"figures/calibration_{s}.png", figures.plot_calibrations,
                         ({k: v[s] for k, v in predictions.items()}, split, s, problem)))
            if hidden:
                jobs.append((f"hidden states against truth, {s}", f"figures/hidden_{s}.png", figures.plot_hidden,
                             ({k: v[s] for k, v in predictions.items()}, split, s, problem)))
    if any(r["status"] == "ok" for r in rows):
        jobs.append(("cost against quality", "figures/cost_quality.png", figures.plot_cost_quality, (rows,)))
    for title, rel, fn, args in jobs:
        try:
            fn(*args, os.path.join(out, rel))
            figs.append((title, rel))
        except Exception as e:
            ctx.note("*", f"figure {rel} failed: {_summary(e)}")
    return figs
