"""A comparison's pharmacometric outputs for a model with typical parameters (a grey-box model): per method, the
PRED/IPRED/residual table of the fitted units and the typical parameters with intervals and eta shrinkage, as
CSV files, and a line of the report."""
import os

import pandas as pd

from ..diagnostics.nlme import eta_shrinkage, prediction_table, typical_parameters
from ..models import GreyBoxNODEModel
from ..utils.persist import atomic_save

__all__ = ["write_nlme_outputs"]


def _save_csv(frame, path):
    atomic_save(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_nlme_outputs(method, result, problem, out, ctx, num_samples=200):
    """Write ``nlme/<method>_table.csv`` (the fitted units' training and, where held out, later observations,
    ``SPLIT`` saying which, with ``PRED``, ``IPRED`` and residuals) and ``nlme/<method>_parameters.csv`` (typical parameters,
    omega with the CV%, noise scales, eta shrinkage), and note the typical parameters in the report.  Models
    without typical parameters are left alone.

    :returns: the relative paths written.
    """
    model = result.model
    if not isinstance(model, GreyBoxNODEModel):
        return []
    os.makedirs(os.path.join(out, "nlme"), exist_ok=True)
    tables = []
    for name in ("train", "extrapolation"):
        if getattr(problem, name) is None:  # every sample of the fitted units was fitted
            continue
        table = prediction_table(result, getattr(problem, name), num_samples)
        table.insert(0, "SPLIT", name)
        tables.append(table)
    rel_table, rel_params = f"nlme/{method}_table.csv", f"nlme/{method}_parameters.csv"
    _save_csv(pd.concat(tables, ignore_index=True), os.path.join(out, rel_table))
    params = typical_parameters(result)
    shrink = eta_shrinkage(result, num_samples)
    params = pd.concat([params, pd.DataFrame([{"parameter": f"shrinkage[{k}]", "median": v} for k, v in
                                              shrink.items()])], ignore_index=True)
    _save_csv(params, os.path.join(out, rel_params))
    line = "scores of units: 'test' is new subjects from the population (population predictions, PRED-type)" + (
        ", 'extrapolation' the fitted subjects' later samples (individual predictions, IPRED-type)"
        if problem.extrapolation is not None else "")
    if line not in ctx.notes.get("*", []):
        ctx.note("*", line)
    typical = params[params.parameter.isin(model.typical_sites())]
    text = ", ".join(f"{r.parameter[:-4]} {r.median:.3g} [{r.lower:.3g}, {r.upper:.3g}]" for r in typical.itertuples())
    ctx.note(method, f"typical parameters (median [90% interval]): {text}; eta shrinkage "
                     + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shrink.items())
                     + f" ({rel_params}; PRED/IPRED table {rel_table})")
    return [rel_table, rel_params]
