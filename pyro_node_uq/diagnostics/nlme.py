"""The diagnostics pharmacometricians read, from a fitted hierarchical (grey-box) model: a NONMEM-like table of
population and individual predictions with residuals, the shrinkage of the random effects, and the typical
parameters with their intervals.

* ``PRED``: the population prediction, every unit's effects at their covariate mean (``eta_z = 0``), median over
  the posterior of the population parameters; ``IPRED``: the unit's individual prediction, posterior median of the
  noise-free mean; ``RES = DV - PRED``, ``IRES = DV - IPRED``, ``IWRES = IRES / sd`` with the error model's
  standard deviation at ``IPRED``.
* Shrinkage of effect ``j``: ``1 - sd_i(E[eta_ij | y]) / omega_j`` (NONMEM's eta shrinkage with posterior means
  as the individual estimates): near 0 when each unit's data pin its effect down, near 1 when they say little.
"""
import pandas as pd
import pyro
import torch

from ..methods.result import conditioned_trace
from ..utils.seeding import param_scope

__all__ = ["eta_shrinkage", "individual_effects", "population_predictions", "prediction_table",
           "typical_parameters"]


def _predict(result, units, samples, sites, new_units=False):
    """``sites`` of the model run on ``units`` (as fitted units, or as ``new_units``) with the draws ``samples``
    fixed, from one trace (:func:`~pyro_node_uq.methods.conditioned_trace`); a diverging solve is rejected."""
    args, kwargs = result.model.predict_args(units)
    kwargs = {**kwargs, "new_units": new_units}
    S = next(iter(samples.values())).shape[0]
    pyro.set_rng_seed(0)
    with param_scope(result.param_state):
        trace = conditioned_trace(result.model.with_divergence("reject"), samples, S, args, kwargs)
    return {name: trace.nodes[name]["value"] for name in sites}


def population_predictions(result, units, num_samples=200):
    """``PRED`` of any units, fitted or new: the posterior median of the noise-free mean with every unit's effects
    at their covariate mean (``eta_z_new = 0``), ``(N, T)`` (the first output).

    :param result: a fitted hierarchical model's :class:`~pyro_node_uq.methods.MethodResult`.
    :param units: :class:`~pyro_node_uq.data.Units` (their times, doses and covariates are used).
    """
    draws = dict(result.posterior_samples(num_samples))
    S = next(iter(draws.values())).shape[0]
    draws["eta_z_new"] = torch.zeros(S, len(units), result.model.eta_dim, dtype=units.y.dtype)
    out = _predict(result, units, draws, ["y_mean"], new_units=True)
    return out["y_mean"].reshape(S, len(units), -1, result.model.obs_dim)[..., 0].contiguous().median(0).values


def prediction_table(result, units, num_samples=200):
    """The fitted units' observations with ``PRED``, ``IPRED`` and residuals (module docstring), one row per
    observation: ``ID, TIME, DV, PRED, IPRED, RES, IRES, IWRES``.

    :param result: a fitted :class:`~pyro_node_uq.methods.MethodResult` of a hierarchical model.
    :param units: the units the model was fitted on (:attr:`~pyro_node_uq.methods.MethodResult.train_split`), or
        the same units with other observation times.
    :param int num_samples: posterior draws.
    :rtype: pandas.DataFrame
    """
    model = result.model
    draws = result.posterior_samples(num_samples)
    S = next(iter(draws.values())).shape[0]
    ind = _predict(result, units, draws, ["y_mean"])["y_mean"].reshape(S, len(units), -1, model.obs_dim)
    site = model._unit_site
    typical = dict(draws)
    if site == "eta":  # centred: the effects at their covariate mean B c_i
        beta = draws.get("beta")
        c = units.covariates
        like = units.y
        typical["eta"] = model._effects_mean(beta, c, like) if beta is not None else torch.zeros_like(draws["eta"])
        typical["eta"] = typical["eta"].expand(draws["eta"].shape)
    else:
        typical["eta_z"] = torch.zeros_like(draws["eta_z"])
    pop = _predict(result, units, typical, ["y_mean"])["y_mean"].reshape(S, len(units), -1, model.obs_dim)
    pred, ipred = pop.contiguous().median(0).values[..., 0], ind.contiguous().median(0).values[..., 0]
    at = {"y_mean": ipred[None, ..., None], **{k: v for k, v in draws.items() if k in ("sigma", "sigma_prop")}}
    sd = model.noise_scale(result.param_state, at)
    sd = torch.ones((), dtype=ipred.dtype) if sd is None else torch.as_tensor(sd, dtype=ipred.dtype)
    if sd.dim() == 4:  # per draw: its median
        sd = sd.contiguous().median(0).values[..., 0]
    sd = sd.expand(ipred.shape)
    times = units.unit_times if units.t.dim() == 2 else units.t.expand(len(units), -1)
    rows = []
    for i in range(len(units)):
        for j in torch.nonzero(units.mask[i])[:, 0].tolist():
            dv = float(units.y[i, j, 0])
            s = float(sd[i, j])
            p, ip = float(pred[i, j]), float(ipred[i, j])
            rows.append({"ID": int(units.ids[i]) if units.ids is not None else i, "TIME": float(times[i, j]),
                         "DV": dv, "PRED": p, "IPRED": ip, "RES": dv - p, "IRES": dv - ip, "IWRES": (dv - ip) / s})
    return pd.DataFrame(rows)


def individual_effects(result, num_samples=200, draws=None, random_part=False):
    """The fitted units' individual random effects, posterior means of ``eta`` ``(N, k)`` (the empirical Bayes
    estimates of NONMEM's tables).

    :param result: a fitted hierarchical model's :class:`~pyro_node_uq.methods.MethodResult`.
    :param dict draws: posterior draws to use (default: ``num_samples`` new ones).
    :param bool random_part: subtract each draw's covariate mean ``B c_i`` (what the covariate model does not
        explain; the same as ``eta`` without covariates).
    """
    draws = result.posterior_samples(num_samples) if draws is None else draws
    if "eta" in draws:
        eta = draws["eta"]
    else:
        eta = _predict(result, result.train_split, draws, ["eta"])["eta"].reshape(draws["eta_z"].shape)
    model, units = result.model, result.train_split
    if random_part and model.covariate_dim and "beta" in draws:
        like = eta.new_zeros(())
        loc = 0.0 if model.covariate_loc is None else model.covariate_loc.to(like)
        scale = 1.0 if model.covariate_scale is None else model.covariate_scale.to(like)
        c = (units.covariates.to(like) - loc) / scale  # (N, C)
        eta = eta - torch.einsum("skc,nc->snk", draws["beta"].reshape(-1, model.eta_dim, model.covariate_dim), c)
    return eta.mean(0)


def eta_shrinkage(result, num_samples=200):
    """Shrinkage of each random effect (module docstring): a dict ``effect name -> shrinkage``.

    :param result: a fitted hierarchical model's :class:`~pyro_node_uq.methods.MethodResult`.
    """
    model = result.model
    draws = result.posterior_samples(num_samples)
    ebe = individual_effects(result, num_samples, draws)
    if "omega" in draws:
        omega = draws["omega"].contiguous().median(0).values  # a point fit's draws are expanded: median misreads
    else:
        with param_scope(result.param_state):
            omega = pyro.param("omega").detach()
    shrink = 1 - ebe.std(0) / omega.reshape(-1)
    return {name: float(v) for name, v in zip(model.effects, shrink)}


def typical_parameters(result, level=0.9, num_samples=1000):
    """Posterior median and central ``level`` interval of every population site: the typical parameters
    (``"<name>_pop"``), omega (with the coefficient of variation ``sqrt(exp(omega^2) - 1)`` of a log-normal
    parameter) and the noise scales.

    :rtype: pandas.DataFrame with columns ``parameter, median, lower, upper``.
    """
    draws = result.posterior_samples(num_samples)
    q = torch.tensor([0.5, (1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    rows = []
    effects = getattr(result.model, "effects", ())
    for name, value in draws.items():
        if name.startswith(("eta", "R.")) or name == "beta":
            continue
        flat = value.reshape(value.shape[0], -1).double()
        for j in range(flat.shape[1]):
            label = name if flat.shape[1] == 1 else f"{name}[{effects[j] if name == 'omega' else j}]"
            med, lo, hi = flat[:, j].quantile(q).tolist()
            rows.append({"parameter": label, "median": med, "lower": lo, "upper": hi})
            if name == "omega":
                cv = (flat[:, j].pow(2).exp() - 1).sqrt().quantile(q).tolist()
                rows.append({"parameter": f"CV%[{effects[j]}]", "median": 100 * cv[0], "lower": 100 * cv[1],
                             "upper": 100 * cv[2]})
    return pd.DataFrame(rows)
