"""``run_comparison``: run methods side by side on one problem with one seed, score them alike and write the
table, one InferenceData netCDF per method, the figures and ``report.md``.

A method that fails or does not apply is recorded in the table with its status and reason and the run goes on.
The run writes into a private staging folder that replaces the output folder in one step at the end
(:class:`~pyro_node_uq.compare.output.OutputFolder`), so a failed, killed or concurrent run never mixes its files
with another run's.
"""
import contextlib
import logging
import os
import signal
import threading
import time
import traceback

import torch
from tqdm.auto import tqdm

from ..diagnostics import to_inference_data
from ..infer.distributed import local_process
from ..methods import METHODS, MethodSkipped, resolve_methods
from ..utils.persist import atomic_save
from ..validation import check_int
from . import figures
from .collapse import collapse_notes
from .context import RunContext
from .nlme_checks import write_nlme_checks
from .nlme_outputs import write_nlme_outputs
from .options import check_method_options
from .output import hold_on_rank_0
from .report import markdown_tables, write_csv, write_report, write_text
from .scoring import (
    REFERENCE_TEXT,
    REFERENCE_TITLE,
    calibrate_error_predictor,
    hidden_comparable,
    score_result,
    training_mean_rows,
)

__all__ = ["ComparisonRows", "run_comparison"]

log = logging.getLogger(__name__)
SPLITS = ("test", "extrapolation")


def _summary(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _present(problem):
    """The scored splits the problem has (a user's problem may have no extrapolation split)."""
    return [s for s in SPLITS if getattr(problem, s) is not None]


def _write_tables(rows, out):
    write_csv(rows, os.path.join(out, "table.csv"))
    write_text(markdown_tables(rows), os.path.join(out, "table.md"))


def _write_idata(result, problem, path, num_samples):
    idata = to_inference_data(result, problem.test, num_samples=num_samples, num_chains=4,
                              output_names=problem.obs_names, input_names=problem.input_names or None)
    atomic_save(path, lambda tmp: idata.to_netcdf(tmp))


class ComparisonRows(list):
    """The table rows of :func:`run_comparison` (a list of dicts), plus how the run ended.

    :ivar bool interrupted: the run was stopped by SIGINT (the rest of the methods are marked skipped).
    :ivar str out: the output folder.
    """

    interrupted = False
    out = None

    @property
    def failed(self):
        """Names of the methods that failed."""
        return [r["method"] for r in self if r["status"] == "failed"]

    @property
    def num_ok(self):
        return sum(r["status"] == "ok" for r in self)


def _follow(ctx, selected):
    """A rank other than 0 under ``torchrun``: take part in every fit (data-parallel SVI, shared-out chains and
    members) in rank 0's order; rank 0 alone predicts, scores and writes."""
    for method in selected:
        try:
            ctx.fit(method.name)
        except Exception as e:  # noqa: BLE001  rank 0 meets the same failure and reports it
            log.debug("compare: %s failed on this rank: %s", method.name, _summary(e))


class _StopOnSigint:
    """First SIGINT: finish the current method, then stop.  Second SIGINT: interrupt the current method too."""

    def __init__(self):
        self.requested, self._old = False, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("compare: interrupted; stopping after the current method (Ctrl-C again to stop it now)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def run_comparison(problem, methods=None, out="results", quick=False, seed=0, progress_bar=True, num_samples=200,
                   overrides=None, idata_samples=200):
    """Run ``methods`` on ``problem`` and write the comparison into ``out``.

    The run owns ``out`` (see :class:`~pyro_node_uq.compare.output.OutputFolder`): it writes into a private
    staging folder and replaces ``out`` with it in one step at the end, so ``out`` always holds one run's
    complete, self-consistent set of files with a ``MANIFEST.json``.  A second run into the same folder at the
    same time is refused.  SIGINT (Ctrl-C) stops after the current method (a second one stops that method too):
    the finished methods are written, the rest are marked skipped, the manifest says ``"complete": false`` and
    the report says so at the top.

    :param problem: a :class:`~pyro_node_uq.data.Problem`.
    :param methods: method names (see :data:`~pyro_node_uq.compare.METHODS`), or ``None`` for all.
    :param str out: output directory: ``table.csv``, ``table.md``, ``report.md``, ``idata/<method>.nc``,
        ``figures/*.png``, ``logs/<method>.log`` (tracebacks of failed methods), ``MANIFEST.json``.  It must be
        new, empty, or an earlier comparison's output (it is replaced as a whole).
    :param bool quick: each method's quick options (a smoke run).
    :param int seed: seed of every fit and prediction.
    :param bool progress_bar: show tqdm bars.
    :param int num_samples: posterior predictive draws per method and split for the scores (>= 2).
    :param dict overrides: method name -> options that replace the registry's.
    :param int idata_samples: draws of guide-based methods in the InferenceData (a multiple of 4 chains).
    :returns: :class:`ComparisonRows`: the table rows (one dict per method, with ``method``, ``status``, scores
        and ``note``), with ``interrupted``.
    :raises ValueError: unknown methods or options, no method selected, or an ``out`` that is not replaceable.
    :raises ~pyro_node_uq.compare.output.OutputFolderBusy: another run is writing into ``out``.

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
    if not selected:
        raise ValueError("methods: no method selected; give at least one name (see --list)")
    check_int(num_samples, "num_samples", minimum=2)
    check_int(idata_samples, "idata_samples", minimum=4)
    check_int(seed, "seed", minimum=0)
    overrides = overrides or {}
    for name in overrides:
        if name not in METHODS:
            raise ValueError(f"overrides: unknown method {name!r}; registered methods are {sorted(METHODS)}")
        check_method_options(METHODS[name], overrides[name])
    rows = ComparisonRows()
    with contextlib.ExitStack() as stack:
        folder = hold_on_rank_0(stack, out)
        options = {m.name: m.options(problem.name, quick, overrides.get(m.name)) for m in METHODS.values()}
        ctx = RunContext(problem, seed=seed, progress_bar=progress_bar and folder is not None, options=options)
        if folder is None:
            _follow(ctx, selected)
            return rows
        stop = stack.enter_context(_StopOnSigint())
        rows.out, stage = folder.out, folder.stage
        for sub in ("idata", "figures", "logs"):
            os.makedirs(os.path.join(stage, sub), exist_ok=True)
        hidden, reason = hidden_comparable(ctx.model, problem)
        ctx.note("*", f"hidden-state scores: {'yes' if hidden else 'skipped'}: {reason}")
        predictions, figs, start_scores = {}, [], {}
        bar = tqdm(selected, desc="compare", disable=not progress_bar)
        for method in bar:
            bar.set_postfix(method=method.name)
            row = {"method": method.name, "status": "ok"}
            rows.append(row)
            if stop.requested:
                row.update(status="skipped", note="not run: the comparison was interrupted (SIGINT)")
                continue
            try:
                result, preds = _run_method(method, ctx, problem, num_samples, seed, hidden, row, start_scores)
            except KeyboardInterrupt:
                stop.requested = True
                row.update(status="skipped", note="interrupted (SIGINT) while running; not scored")
                continue
            except MethodSkipped as e:
                row.update(status="skipped", note=str(e))
                _write_tables(rows, stage)
                continue
            except Exception as e:  # one method's failure must not end the comparison  # noqa: BLE001
                row.update(status="failed", note=_summary(e) + f" (traceback: logs/{method.name}.log)")
                write_text(traceback.format_exc(), os.path.join(stage, "logs", f"{method.name}.log"))
                tqdm.write(f"compare: {method.name} failed: {_summary(e)}")
                _write_tables(rows, stage)
                continue
            if preds:
                predictions[method.name] = preds
                with local_process():
                    figs += _method_outputs(method, result, preds, problem, stage, ctx, idata_samples)
            _write_tables(rows, stage)
        rows.interrupted = stop.requested
        if problem.task == "trajectories":
            for row in training_mean_rows(problem, seed=seed):
                ctx.section_row(REFERENCE_TITLE, REFERENCE_TEXT, row)
        stochastic = {r["method"] for r in rows if (r.get("stochastic_dim") or 0) > 0}
        for name, note in collapse_notes(predictions, stochastic).items():
            ctx.note(name, note)
        _write_tables(rows, stage)
        figs += _summary_figures(rows, predictions, problem, stage, hidden, ctx)
        config = {"problem": problem.name, "seed": seed, "quick": quick, "predictive draws per method": num_samples,
                  "dtype": str(problem.train.y.dtype), "torch threads": torch.get_num_threads(),
                  "total wall time [s]": round(time.perf_counter() - start, 1)}
        write_report(os.path.join(stage, "report.md"), problem, rows, figs, selected, ctx, config,
                     incomplete=rows.interrupted)
        folder.publish(complete=not rows.interrupted, methods={r["method"]: r["status"] for r in rows})
    return rows


def _fit_state(result):
    """How an optimisation ended: ``converged``, ``steps_used``, ``loss_slope`` and the final training loss (the
    mean of the last 10 losses)."""
    losses = list(result.losses or [])
    return {"converged": result.converged, "steps_used": result.steps_used, "loss_slope": result.loss_slope,
            "train_loss": sum(losses[-10:]) / len(losses[-10:]) if losses else None}


def _start_row(name, ctx, problem, num_samples, seed, cache):
    """The warm start ``name``'s own final training loss and test NLL (scored once per run)."""
    if name not in cache:
        start = ctx.fit(name)
        pred = {"test": {k: v.detach() for k, v in start.predict(problem.test, num_samples=num_samples,
                                                                 seed=seed).items()}}
        scores = score_result(start, problem, pred, hidden=False)
        cache[name] = {"start": name, "start_train_loss": _fit_state(start)["train_loss"],
                       "start_test_nll": scores.get("test_nll")}
    return cache[name]


def _run_method(method, ctx, problem, num_samples, seed, hidden, row, start_scores=None):
    """Fit one method, predict both splits and score it into ``row`` (with how its fit ended and its warm start's
    scores); returns ``(result, predictions)``.  Under ``torchrun`` the fit is the only step the ranks take together;
    rank 0 predicts and scores alone."""
    result = ctx.fit(method.name)
    with local_process():
        return result, _score_method(method, result, ctx, problem, num_samples, seed, hidden, row, start_scores)


def _score_method(method, result, ctx, problem, num_samples, seed, hidden, row, start_scores):
    row.update(_fit_state(result))
    if result.converged is False:
        ctx.note(method.name, f"NOT CONVERGED: {result.stop_reason}")
    if method.start and problem.task == "trajectories":
        row.update(_start_row(method.start, ctx, problem, num_samples, seed,
                              {} if start_scores is None else start_scores))
    preds = {}
    if method.kind == "error":
        note = calibrate_error_predictor(result, problem.test)
        if note:
            ctx.note(method.name, note)
    else:
        preds = {s: {k: v.detach() for k, v in result.predict(getattr(problem, s), num_samples=num_samples,
                                                               seed=seed).items()}
                 for s in _present(problem)}
    row.update(score_result(result, problem, preds, hidden=hidden))
    return preds


def _method_outputs(method, result, preds, problem, out, ctx, idata_samples):
    """Band figures and the InferenceData netCDF of one finished method; failures become notes."""
    figs = []
    for s in _present(problem):
        rel = f"figures/bands_{method.name}_{s}.png"
        try:
            figures.plot_bands(method.name, preds[s], getattr(problem, s), s, problem, os.path.join(out, rel))
            figs.append((f"{method.name}: predictive bands, {s}", rel))
        except Exception as e:  # noqa: BLE001
            ctx.note(method.name, f"band plot on {s} failed: {_summary(e)}")
    try:
        _write_idata(result, problem, os.path.join(out, "idata", f"{method.name}.nc"), idata_samples)
    except Exception as e:  # noqa: BLE001
        ctx.note(method.name, f"InferenceData not written: {_summary(e)}")
    try:
        write_nlme_outputs(method.name, result, problem, out, ctx)
    except Exception as e:  # noqa: BLE001
        ctx.note(method.name, f"PRED/IPRED table and typical parameters not written: {_summary(e)}")
    try:
        figs += write_nlme_checks(method.name, result, problem, out, ctx)
    except Exception as e:  # noqa: BLE001
        ctx.note(method.name, f"NPDE, VPC and random-effect plots not written: {_summary(e)}")
    return figs


def _summary_figures(rows, predictions, problem, out, hidden, ctx):
    figs = []
    jobs = []
    if predictions:
        for s in _present(problem):
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
        except Exception as e:  # noqa: BLE001
            ctx.note("*", f"figure {rel} failed: {_summary(e)}")
    return figs
