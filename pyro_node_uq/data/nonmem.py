"""A problem from the user's own NONMEM-style event file: units held out by a seeded split, a hierarchical NODE
configured from the data (compartments, dose and covariate scales)."""
import dataclasses
from pathlib import Path

import torch

from .events import read_events
from .units import refine_grid, units_problem

__all__ = ["events_problem"]


def events_problem(path, covariates=(), test_fraction=0.25, time_fraction=2 / 3, seed=0, num_folds=None, fold=0,
                   log_covariates="positive", **read_kwargs):
    """Read ``path`` with :func:`~pyro_node_uq.data.read_events` and split it with
    :func:`~pyro_node_uq.data.units.units_problem`.

    The recommended :class:`~pyro_node_uq.models.HierarchicalNODEModel` has one hidden component per compartment
    named in the file (at least two: a depot and a central one) and observes the observations' compartment (the
    highest dosed one when the file does not say; it becomes hidden component 0, the observed one), inserts unobserved grid times so that fixed solver steps span at most 2% of the time range,
    scales doses so that a dose's size matches the observations' scale
    (``dose_scale = max DV / max AMT``), standardises the covariates by their training mean and std, and puts a
    rate and an output random effect on every unit.  That NODE has no parameter for a modelled infusion rate or
    duration (``RATE`` -1 / -2) and refuses such doses when it solves; :func:`~pyro_node_uq.data.structured_problem`
    gives them one.

    :param path: CSV file (or ``DataFrame``) in the NONMEM / nlmixr2 convention.
    :param covariates: covariate column names.
    :param float test_fraction: fraction of units held out as new units.
    :param float time_fraction: fraction of each fitted unit's observations used for training.
    :param int seed: seed of the unit split.
    :param int num_folds, fold: hold out fold ``fold`` of ``num_folds`` instead (every unit held out once over
        ``fold = 0, ..., num_folds - 1``, :func:`~pyro_node_uq.data.unit_folds`).
    :param str log_covariates: ``"positive"`` (default): a covariate whose every value is positive (weight, age,
        creatinine clearance) enters through its logarithm, named ``log(NAME)``, so that its effect on a
        log-normal parameter is a power model, ``theta_i = theta (WT_i / WT_ref)^b exp(eta_i)``, as allometric
        scaling is; others (a 0/1 indicator) enter as they are.  ``"none"``: every covariate as it is.
    :param read_kwargs: column names for :func:`~pyro_node_uq.data.read_events` (``id=``, ``dv=``...).
    :rtype: ~pyro_node_uq.data.Problem

    Example::

        >>> from pyro_node_uq.data.pk import theophylline_table
        >>> p = events_problem(theophylline_table(), covariates=["WT"])
        >>> p.name, len(p.train), len(p.test), p.model_kwargs["hidden_dim"], p.train.doses.compartment[0].tolist()
        ('theophylline_table', 9, 3, 2, [1])
    """
    if log_covariates not in ("positive", "none"):
        raise ValueError(f"log_covariates: expected 'positive' or 'none', got {log_covariates!r}")
    units = read_events(path, covariates=tuple(covariates), **read_kwargs)
    if log_covariates == "positive" and units.covariates is not None:
        units = _log_positive_covariates(units)
    units = refine_grid(units, float(units.t[-1] - units.t[0]) / 50)  # fixed steps of at most 2% of the span
    doses = units.doses
    dosed = set() if doses is None else set(doses.compartment[doses.mask].tolist())
    observed = units.obs_cmt if units.obs_cmt is not None else max(dosed | {1})
    hidden = max(2, max(dosed | {observed}) + 1)
    if doses is not None and observed != 0:  # the model observes the first hidden component: swap it with 0
        c = doses.compartment
        units.doses = doses._replace(compartment=torch.where(c == observed, 0, torch.where(c == 0, observed, c)))
    y_max = float(units.y[..., 0][units.mask].abs().max())
    if not y_max > 0:  # the dose and noise scales are set from the observations' scale
        raise ValueError(f"events_problem: every observation ({units.mask.sum()} values of the DV column) is 0; "
                         "nothing to fit")
    a_max = float(doses.amount[doses.mask].max()) if doses is not None else 1.0
    name = Path(path).stem if isinstance(path, (str, Path)) else "theophylline_table"
    problem = units_problem(
        name, f"units read from {name} (NONMEM event format)", units, test_fraction, time_fraction, seed, num_folds,
        fold, obs_names=("DV",), time_unit="")
    kwargs = {"hidden_dim": hidden, "R_hidden": (16,), "Z_hidden": None, "effects": ("rate", "output"),
                  "dose_scale": y_max / a_max if a_max > 0 else 1.0, "scale": "learned", "scale_init": 0.1 * y_max,
                  "solver": {"method": "rk4"}}
    if covariates:
        c = problem.train.covariates
        kwargs.update(covariate_dim=len(covariates), covariate_loc=c.mean(0), covariate_scale=c.std(0).clamp(min=1e-8))
    problem.model_kwargs = kwargs
    return problem


def _log_positive_covariates(units):
    """``units`` with every covariate column whose values are all positive replaced by its logarithm and renamed
    ``log(NAME)``."""
    c = units.covariates
    positive = (c > 0).all(0)
    if not bool(positive.any()):
        return units
    names = tuple(f"log({n})" if bool(p) else n for n, p in zip(units.covariate_names, positive.tolist()))
    logged = torch.where(positive, c.clamp(min=torch.finfo(c.dtype).tiny).log(), c)
    return dataclasses.replace(units, covariates=logged, covariate_names=names)
