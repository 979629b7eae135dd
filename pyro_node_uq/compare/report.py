"""The comparison's tables (CSV with every column, Markdown in three readable sections) and ``report.md``."""
import csv
import io
import math
import os

from ..utils.persist import atomic_save

__all__ = ["TABLE_SECTIONS", "markdown_tables", "write_csv", "write_report", "write_text"]

_LEAD = ["method", "status", "elbo", "wall_time", "num_model_evals", "stochastic_dim"]

#: (title, [(column, header)]) of the Markdown tables
TABLE_SECTIONS = [
    ("Held-out test trajectories (in the training range)", [
        ("elbo", "ELBO"), ("test_rmse", "RMSE"), ("test_nll", "NLL"), ("test_crps", "CRPS"),
        ("test_coverage_50", "cov50"), ("test_coverage_90", "cov90"), ("test_coverage_95", "cov95"),
        ("test_width_50", "width50"), ("test_width_90", "width90"), ("test_width_95", "width95")]),
    ("Extrapolation trajectories (outside the training range)", [
        ("extrap_rmse", "RMSE"), ("extrap_nll", "NLL"), ("extrap_crps", "CRPS"), ("extrap_coverage_50", "cov50"),
        ("extrap_coverage_90", "cov90"), ("extrap_coverage_95", "cov95"), ("extrap_width_50", "width50"),
        ("extrap_width_90", "width90"), ("extrap_width_95", "width95")]),
    ("Hidden states, error prediction and cost", [
        ("hidden_test_coverage_90", "hidden cov90 (test)"), ("hidden_extrap_coverage_90", "hidden cov90 (extrap)"),
        ("hidden_test_crps", "hidden CRPS (test)"), ("error_spearman", "error Spearman"),
        ("ood_auroc", "OOD AUROC"), ("wall_time", "wall s"), ("num_model_evals", "model evals"),
        ("stochastic_dim", "stoch. dim")]),
    ("Convergence and warm start", [
        ("converged", "converged"), ("steps_used", "steps"), ("loss_slope", "final loss slope / step"),
        ("train_loss", "train loss"), ("start", "warm start"), ("start_train_loss", "start train loss"),
        ("start_test_nll", "start test NLL")]),
    ("Classification (posterior mean probabilities)", [
        ("test_accuracy", "accuracy (test)"), ("test_ece", "ECE (test)"), ("test_brier", "Brier (test)"),
        ("extrap_accuracy", "accuracy (extrap)"), ("extrap_ece", "ECE (extrap)"), ("extrap_brier", "Brier (extrap)")]),
]


def _fmt(value, column=None):
    if column == "converged" and value is not None and value != "":
        return "yes" if value in (True, "True") else "**NO** (budget ran out)"
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:d}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value).replace("|", "/").replace("\n", " ")


def columns(rows):
    """Every column of ``rows``: the lead columns, the scores in first-seen order, then ``note``."""
    cols = list(_LEAD)
    for row in rows:
        cols += [k for k in row if k not in cols and k != "note"]
    return cols + ["note"]


def write_csv(rows, path):
    """Write every column of every row as CSV (atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(rows), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(buf.getvalue(), path)


def markdown_tables(rows):
    """The Markdown tables (one per :data:`TABLE_SECTIONS` entry that some row has scores for); failed or skipped
    methods show their status."""
    out = []
    scored = [(title, cols) for title, cols in TABLE_SECTIONS
              if any(row.get(c) is not None for row in rows for c, _ in cols if c not in _LEAD)]
    for title, cols in scored or TABLE_SECTIONS[:1]:  # sections some method has scores for
        out += [f"### {title}", "", "| method | " + " | ".join(h for _, h in cols) + " |",
                "|---|" + "---:|" * len(cols)]
        for row in rows:
            if row.get("status") != "ok":
                cells = [row.get("status", "?")] + [""] * (len(cols) - 1)
            else:
                cells = [_fmt(row.get(c), c) for c, _ in cols]
            out.append(f"| {row['method']} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def write_text(text, path):
    """Write ``text`` to ``path`` atomically."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_save(path, write)


def _headline(rows, config):
    """One line comparing the AutoLangevin guide with AutoNormal on test NLL when both ran; at quick budgets,
    where it trails, the line says why (both fits are cut short and the guide starts from AutoNormal's)."""
    nll = {r["method"]: r.get("test_nll") for r in rows if r.get("status") == "ok"}
    try:
        langevin, normal = float(nll["langevin_learned"]), float(nll["autonormal"])
    except (KeyError, TypeError, ValueError):
        return []
    if not (math.isfinite(langevin) and math.isfinite(normal)):
        return []
    if langevin <= normal:
        return [(f"> AutoLangevin (`langevin_learned`) is ahead of AutoNormal on test NLL: {langevin:.3f} against "
                f"{normal:.3f}."), ""]
    why = (" At quick budgets both fits stop far short of convergence and the guide's score network trains for a "
           "few dozen iterations from AutoNormal's own unfinished fit, so this row measures the budget; run without "
           "`--quick` to compare the methods." if config.get("quick") else "")
    return [(f"> AutoLangevin (`langevin_learned`) trails AutoNormal on test NLL: {langevin:.3f} against "
            f"{normal:.3f}.{why}"), ""]


def write_report(path, problem, rows, figures, methods, ctx, config, incomplete=False):
    """``report.md``: the problem, the run's configuration, the tables, the figures and notes per method.

    :param figures: list of ``(title, relative path)``.
    :param methods: the :class:`~pyro_node_uq.compare.Method` s that were requested.
    :param config: dict of the run's settings (seed, quick, predictive samples...).
    :param bool incomplete: the run was interrupted: a notice at the top lists the methods not run.
    """
    lines = [f"# Inference comparison on `{problem.name}`", ""]
    if incomplete:
        missing = [r["method"] for r in rows if r.get("status") == "skipped" and "interrupted" in (r.get("note") or "")]
        lines += [(f"> **Incomplete run**: interrupted (SIGINT) before {', '.join(missing) or 'the end'} finished; "
                  "those methods are marked skipped and have no scores, figures or InferenceData."), ""]
    failed = [r["method"] for r in rows if r.get("status") == "failed"]
    if failed:
        lines += [f"> **Failed methods**: {', '.join(failed)} (see the notes and `logs/`).", ""]
    unfinished = [r["method"] for r in rows if r.get("status") == "ok" and r.get("converged") in (False, "False")]
    if unfinished:
        lines += [(f"> **Not converged** (the step budget ran out before the loss stopped improving; these rows "
                  f"reflect the budget, not the method): {', '.join(unfinished)}."), ""]
    lines += _headline(rows, config)
    lines += ["## Problem", "", problem.description.strip(), ""]
    unit = "trajectories" if problem.task == "trajectories" else "points"
    extra = f"{len(problem.extrapolation)} extrapolation" if problem.extrapolation is not None else "no extrapolation"
    lines += [(f"Splits: {len(problem.train)} training, {len(problem.test)} test and {extra} "
              f"{unit}; outputs {', '.join(problem.obs_names)}; model `{ctx.model!r}`."), ""]
    lines += ["## Run", ""] + [f"- {k}: `{v}`" for k, v in config.items()] + [""]
    lines += ["| method | description | options |", "|---|---|---|"]
    for m in methods:
        lines.append(f"| {m.name} | {m.description} | `{_fmt(ctx.options.get(m.name, {}))}` |")
    lines += ["", "## Results", "", ("Scores against the noisy held-out observations; coverage is the fraction of "
              "observations inside the central predictive interval (ideal: its level); NLL is per observed entry of "
              "the posterior-predictive mixture; wall time and data-model evaluations include the fits a method "
              "started from (MAP, AutoNormal). LTAU predicts errors rather than a predictive distribution: its row "
              "reports error Spearman and OOD AUROC (its predictive is MAP's). For the other methods error "
              "Spearman ranks the predictive spread against the true error of the predictive mean, and OOD AUROC "
              "separates test from extrapolation points by that spread. Optimisation-based fits stop when their "
              "window-averaged training loss no longer improves, at most at their step budget (`steps` in the "
              "options); `converged` says which ended how, `final loss slope` is the loss's slope over the last "
              "window (negative: still falling), and `warm start` names the fit a method started from, with that "
              "fit's own final training loss and test NLL, so a row that merely reflects its start shows it."), "",
              markdown_tables(rows), "The full table (every column) is `table.csv`.", ""]
    for title, section in getattr(ctx, "sections", {}).items():
        cols = list(section["rows"][0])
        lines += [f"## {title}", "", section["text"], "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c), c) for c in cols) + " |" for r in section["rows"]] + [""]
    lines += ["## Figures", ""]
    for title, rel in figures:
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    lines += ["## Notes", ""]
    for row in rows:
        texts = ([row["note"]] if row.get("note") else []) + ctx.notes.get(row["method"], [])
        if texts:
            lines.append(f"- **{row['method']}** ({row.get('status')}): " + "; ".join(texts))
    for text in ctx.notes.get("*", []):
        lines.append(f"- {text}")
    lines.append("")
    write_text("\n".join(lines), os.fspath(path))
