"""A units problem configured for a grey-box model: a mechanistic structure chosen from the dosing, typical values
guessed from the data, doses in their own units."""
import math
from dataclasses import replace

import torch

__all__ = ["PK_STRUCTURES", "structured_problem"]

PK_STRUCTURES = ("one_compartment_iv", "one_compartment_oral", "two_compartment_iv", "two_compartment_oral",
                 "michaelis_menten_iv", "michaelis_menten_oral")


def _auto_structure(dosed):
    """One-compartment oral when any dose goes into a depot (state 1), IV when all go into the observed one."""
    return "one_compartment_oral" if dosed - {0} else "one_compartment_iv"


def _reference_dose_times(t, mask, doses):
    """Per unit, the last dose at or before its first observation (its first dose if none is): the sampling
    span and the time of the peak count from it, not from doses added long before (a steady state)."""
    first_obs = torch.where(mask, t, torch.full_like(t, math.inf)).min(1).values
    given = doses.mask & (doses.time <= first_obs[:, None])
    last = torch.where(given, doses.time, torch.full_like(doses.time, -math.inf)).max(1).values
    first = torch.where(doses.mask, doses.time, torch.full_like(doses.time, math.inf)).min(1).values
    return torch.where(torch.isfinite(last), last, first)


def _last_dose_before(times, doses, default):
    """Per unit, the last dose at or before ``times`` (``default`` where none is): with repeated doses the peak
    level follows the dose just before it, not the first one."""
    given = doses.mask & (doses.time <= times[:, None])
    last = torch.where(given, doses.time, torch.full_like(doses.time, -math.inf)).max(1).values
    return torch.where(torch.isfinite(last), last, default)


def _typical_guess(units):
    """Rough typical values from the data, the medians of the typical parameters' wide priors: V from the first
    dose over the peak level, an elimination half-life of a quarter of the sampling span, an absorption rate
    from the time of the peak after the dose before it (so a prior a few-fold off still leaves the data in
    charge)."""
    y, mask, doses = units.y[..., 0], units.mask, units.doses
    peak = torch.where(mask, y, torch.full_like(y, -math.inf)).max(1)
    first = doses.amount[:, 0]
    ok = torch.isfinite(peak.values) & (peak.values > 0)
    V = float((first[ok] / peak.values[ok]).median()) if ok.any() else 1.0
    t = units.t if units.t.dim() == 2 else units.t.expand(y.shape)
    ref = _reference_dose_times(t, mask, doses)
    span = float((t[mask].max() - ref.min()).clamp(min=1e-6))
    ke = 4 * math.log(2) / span
    at_peak = t.gather(1, peak.indices[:, None])[:, 0]
    t_peak = (at_peak - _last_dose_before(at_peak, doses, ref))[ok]
    ka = max(1.0 / float(t_peak.median().clamp(min=span / 100)), 1.5 * ke) if ok.any() else 3 * ke
    conc = float(peak.values[ok].median()) if ok.any() else 1.0
    D = float(t_peak.median().clamp(min=span / 100)) if ok.any() else span / 10  # an infusion peaks at its end
    A = float(first.median())
    return {"CL": V * ke, "V": V, "ka": ka, "Q": V * ke, "V2": V, "Km": conc / 2, "Vmax": V * ke * conc, "D": D,
            "R": A / D}


def structured_problem(problem, structure="auto", correction=None, error_model="combined", noise="studentt", df=4.0):
    """``problem`` (from :func:`~pyro_node_uq.data.events_problem` or another units problem with doses) with a
    :class:`~pyro_node_uq.models.GreyBoxNODEModel` as its recommended model.

    :param problem: a :class:`~pyro_node_uq.data.Problem` of :class:`~pyro_node_uq.data.Units` with doses, the
        observed compartment being hidden component 0 and a depot (if any) component 1.
    :param str structure: a pharmacokinetic structure of :data:`PK_STRUCTURES`, or ``"auto"``: one-compartment
        oral when doses go into a depot, IV otherwise.
    :param tuple correction: hidden widths of the network correction, or ``None`` (the mechanistic model alone,
        solved in closed form where the structure has one).  The correction reads every unit's concentrations and
        corrects its parameters other than the volumes as functions of them (``correction_target="parameters"``,
        ``correction_input="concentration"`` of :class:`~pyro_node_uq.models.GreyBoxNODEModel`): a saturable
        clearance or absorption, scaled to each unit's own parameters.
    :param str error_model: the observation error model (``"combined"``: additive plus proportional, both
        latent, with ``HalfNormal`` priors of a tenth of the largest observation for the additive part and of
        :class:`~pyro_node_uq.models.NODEModel`'s ``prop_scale_prior`` for the proportional coefficient).
    :param str noise: the residuals' law around the error model's scale: ``"studentt"`` (default) or
        ``"normal"``.  Real concentration data hold samples no structural model explains (a pre-dose sample with
        drug left from an earlier dose, a mislabelled time, an assay error); under a Normal law one of them sets
        the noise and the omegas for all the others, under a Student-t it costs a few nats.  When the data are
        Normal the two fit alike (``benchmarks/greybox_cv.py`` compares them on new subjects).
    :param float df: the Student-t's degrees of freedom.

    Doses with a modelled rate or duration (``RATE`` -1 / -2) add the parameters ``R<n>`` / ``D<n>`` of
    :mod:`~pyro_node_uq.models.dose_parameters` (``dose_parameters``, prior medians: the median time from a dose
    to the peak for a duration, the first dose over it for a rate), with a random effect like the others.
    :returns: a new problem; its ``model_kwargs`` keep the covariate model of ``problem``.
    :raises ValueError: an unknown structure, no doses, or doses into a compartment the structure lacks.

    Example::

        >>> from pyro_node_uq.data import events_problem
        >>> from pyro_node_uq.data.pk import theophylline_table
        >>> p = structured_problem(events_problem(theophylline_table("mg"), covariates=["WT"]))
        >>> p.model_class, p.model_kwargs["structure"], sorted(p.model_kwargs["typical"])
        ('GreyBoxNODEModel', 'one_compartment_oral', ['CL', 'V', 'ka'])
    """
    from ..distributions import ErrorModel
    from ..models.dose_parameters import dose_parameter_names
    from ..models.structures import get_structure

    ErrorModel.coerce(error_model, noise, df)  # a wrong option fails here, naming it, not at the first fit

    train = problem.train
    doses = train.doses
    if doses is None or not bool(doses.mask.any()):
        raise ValueError(f"structure: the {PK_STRUCTURES} structures need dose events; {problem.name!r} has none")
    dosed = set(doses.compartment[doses.mask].tolist())
    name = _auto_structure(dosed) if structure == "auto" else structure
    if name not in PK_STRUCTURES:
        raise ValueError(f"structure: expected 'auto', 'none' or one of {PK_STRUCTURES}, got {structure!r}")
    s = get_structure(name)
    bad = sorted(c for c in dosed if c >= s.hidden_dim or (c > 1))
    if bad:
        raise ValueError(f"structure {name!r}: doses go into compartments {[c + 1 for c in bad]} (1-based, the "
                         f"observed one counted as the central compartment), but its states are {s.states}")
    guess = _typical_guess(train)
    y_max = float(train.y[..., 0][train.mask].abs().max())
    splits = [x for x in (train, problem.test, problem.extrapolation) if x is not None]
    names = sorted({n for x in splits for n in dose_parameter_names(getattr(x, "doses", None))})
    modelled = {n: guess[n[0]] for n in names}
    kwargs = {"structure": name, "typical": {k: guess[k] for k in s.param_names}, "error_model": error_model,
                  "noise": noise, "df": float(df), "scale": "latent", "scale_prior": 0.1 * y_max,
                  "on_divergence": "reject",
                  "correction": None if correction is None else tuple(correction),
                  "state_scale": float(doses.amount[doses.mask].max())}
    if correction is not None:
        kwargs.update(correction_target="parameters", correction_input="concentration")
    if modelled:
        kwargs["dose_parameters"] = modelled
    if error_model == "combined":
        kwargs["prop_scale"] = "latent"
    for key in ("covariate_dim", "covariate_loc", "covariate_scale", "covariate_names"):
        if key in problem.model_kwargs:
            kwargs[key] = problem.model_kwargs[key]
    return replace(problem, model_class="GreyBoxNODEModel", model_kwargs=kwargs)
