"""Individual predictions: condition a new unit's random effects on its first observations, then forecast.

For each posterior draw s of the population (weights, omega, noise) from any method, the new units' standardised
effects ``eta_z`` are drawn from their conditional posterior ``p(eta_z | theta_s, early data)`` by importance
sampling with the population prior as proposal (``num_proposals`` per draw and unit, one vectorised solve),
then resampled; the forecast is the posterior predictive with those effects.  With no early observation this is
the population prediction.
"""
import warnings
from typing import NamedTuple

import pyro
import torch

from ..utils.seeding import param_scope
from .result import conditioned_trace

__all__ = ["ConditionedEffects", "condition_effects", "predict_units"]

PER_UNIT = ("eta_z", "eta", "eta_z_new", "eta_new")


class ConditionedEffects(NamedTuple):
    """New units' effects conditioned on their early data.

    :ivar eta_z: resampled standardised effects ``(S, N, k)``.
    :ivar ess: effective sample size of the importance weights ``(S, N)`` (out of ``num_proposals``).
    :ivar globals: the population draws used.
    """

    eta_z: torch.Tensor
    ess: torch.Tensor
    globals: dict


def _population(result, num_samples, seed):
    samples = result.posterior_samples(num_samples, seed=seed)
    return {k: v for k, v in samples.items() if k not in PER_UNIT}


def condition_effects(result, units, num_samples=100, num_proposals=128, seed=0):
    """Draw new units' random effects given their observed entries (``units.mask``) and the population posterior.

    :param result: a fitted :class:`~pyro_node_uq.methods.MethodResult` of a
        :class:`~pyro_node_uq.models.HierarchicalNODEModel`.
    :param units: :class:`~pyro_node_uq.data.Units` whose ``mask`` marks the observations to condition on.
    :param int num_samples: population draws ``S``.
    :param int num_proposals: importance-sampling proposals per draw and unit.
    :param int seed: seed of the draws.
    :rtype: ConditionedEffects
    """
    model = result.model
    if getattr(model, "eta_dim", 0) < 1:
        raise ValueError("result: the model has no random effects (a HierarchicalNODEModel with effects) to condition")
    pop = _population(result, num_samples, seed)
    S, M, N, k = next(iter(pop.values())).shape[0], num_proposals, len(units), model.eta_dim
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(S * M, N, k, generator=gen, dtype=units.y.dtype).to(units.y.device)
    data = {name: v.repeat_interleave(M, 0) for name, v in pop.items()}
    data["eta_z_new"] = z
    kwargs = dict(units.extras, new_units=True)
    pyro.set_rng_seed(seed)
    rejecting = model.with_divergence("reject")  # a diverged proposal gets weight 0
    with param_scope(result.param_state), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # diverged proposals: weight 0, counted in ess
        trace = conditioned_trace(rejecting, data, S * M, (units.t, units.x, units.y),
                                  dict(kwargs, mask=units.mask, censored=units.censored))
    site = trace.nodes["obs"]
    loglik = site["fn"].log_prob(site["value"]).reshape(S, M, N)
    weights = torch.softmax(loglik, dim=1)
    ess = 1.0 / weights.pow(2).sum(1)
    pick = torch.multinomial(weights.movedim(1, -1).reshape(S * N, M), 1, generator=gen).reshape(S, N)
    chosen = z.reshape(S, M, N, k).gather(1, pick[:, None, :, None].expand(S, 1, N, k))[:, 0]
    return ConditionedEffects(chosen, ess, pop)


def predict_units(result, units, conditioned=None, num_samples=100, seed=0, sites=None):
    """Posterior predictive of new units: population-level (``conditioned=None``: effects from the population), or
    individual (effects from :func:`condition_effects`).

    :param result: the fitted :class:`~pyro_node_uq.methods.MethodResult`.
    :param units: the :class:`~pyro_node_uq.data.Units` to predict (its ``t``, doses and covariates).
    :param ConditionedEffects conditioned: effects drawn by :func:`condition_effects` on these units.
    :param int num_samples: draws (ignored when ``conditioned`` fixes them).
    :param int seed: seed.
    :param sites: sites to return (default ``"obs"``, ``"y_mean"``, ``"hidden"``).
    :returns: dict like :meth:`~pyro_node_uq.methods.MethodResult.predict`: ``"obs"``, ``"y_mean"``, ``"hidden"``
        ``(S, N, T, ...)``.

    Example::

        >>> from pyro_node_uq.data import load_problem, split_by_time
        >>> from pyro_node_uq.methods import run_map
        >>> p = load_problem("pk_repeated", num_units=8)
        >>> fit = run_map(p.default_model(), p.train, num_steps=2, progress_bar=False)
        >>> early, late = split_by_time(p.test, 1 / 3)
        >>> eff = condition_effects(fit, early, num_samples=4, num_proposals=8)
        >>> predict_units(fit, late, eff)["y_mean"].shape[:2], eff.ess.shape
        (torch.Size([4, 2]), torch.Size([4, 2]))
    """
    if conditioned is None:
        pop = _population(result, num_samples, seed)
    else:
        pop = dict(conditioned.globals, eta_z_new=conditioned.eta_z)
    S = next(iter(pop.values())).shape[0]
    keep = result.model.predict_sites
    sites = [k for k in keep if k in ("obs", "y_mean", "hidden")] if sites is None else list(sites)
    pyro.set_rng_seed(seed)
    # "reject": a posterior draw whose solve diverges is reported with a warning, not an error for all draws
    with param_scope(result.param_state), torch.no_grad():
        trace = conditioned_trace(result.model.with_divergence("reject"), pop, S, (units.t, units.x, None),
                                  dict(units.extras, new_units=True, num_trajectories=len(units)))
    return {k: trace.nodes[k]["value"].reshape((S,) + trace.nodes[k]["value"].shape[-3:]) for k in sites}
