"""The marginal likelihood of a hierarchical model's population parameters: each unit's random effects integrated
out by importance sampling, and its maximiser (the population parameters' maximum-likelihood point).

    log p(y | pop) = sum_i log int p(y_i | eta_i, pop) N(eta_i; B c_i, diag(omega^2)) d eta_i

This is the quantity an NLME program's objective approximates (FOCE/Laplace: ``-2 log p``), so fits compare with
them on the same scale.  Per unit, a first pass proposes from the effects' prior; a second proposes from a Gaussian
fitted to the first pass's weighted draws (its covariance inflated, so the tails are covered) and gives the
estimate.  Every unit and draw goes through one vectorised model evaluation per pass.
"""
import copy

import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to

from ..utils.seeding import param_scope

__all__ = ["marginal_log_likelihood", "maximize_marginal_likelihood"]

_PER_UNIT = ("eta", "eta_z", "eta_new", "eta_z_new")


def _centred(model):
    if getattr(model, "eta_dim", 0) < 1:
        raise ValueError("model: the marginal likelihood integrates random effects; give a hierarchical model "
                         "with effects")
    m = copy.copy(model)
    m.parameterization, m.record = "centred", False
    return m


def _terms(model, units, values, eta, param_state):
    """``log p(y_i | eta, pop) + log N(eta; B c_i, omega)`` per draw and unit ``(M, N)``."""
    M = eta.shape[0]
    with param_scope(param_state), poutine.block(), pyro.plate("_marginal_draws", M, dim=-2):
        trace = poutine.trace(poutine.condition(model, {**values, "eta": eta})).get_trace(
            units.t, units.x, units.y, mask=units.mask, censored=units.censored, doses=units.doses,
            covariates=units.covariates)
    obs, prior = trace.nodes["obs"], trace.nodes["eta"]
    return obs["fn"].log_prob(obs["value"]) + prior["fn"].log_prob(prior["value"])


def _proposal_draws(loc, scale_tril, M, gen):
    z = torch.randn((M,) + loc.shape, generator=gen, dtype=loc.dtype).to(loc.device)
    return loc + (scale_tril @ z[..., None]).squeeze(-1)


def _gauss_log_density(eta, loc, scale_tril):
    d = torch.distributions.MultivariateNormal(loc, scale_tril=scale_tril)
    return d.log_prob(eta)


def marginal_log_likelihood(model, units, values, num_samples=2000, seed=0, inflate=1.5, param_state=None,
                            per_unit=False):
    """The log-likelihood of ``units`` at the population values ``values``, random effects integrated out.

    :param model: a :class:`~pyro_node_uq.models.HierarchicalNODEModel` (or grey-box model) with effects.
    :param units: :class:`~pyro_node_uq.data.Units` to score (its ``mask`` marks the observations).
    :param dict values: the population sites' values (typical parameters, ``omega``, ``sigma``, weights,
        ``beta``), unbatched; sites not given are drawn from their priors (give them all).
    :param int num_samples: draws per unit and pass.
    :param int seed: seed of the draws.
    :param float inflate: the second pass's proposal std is the first pass's weighted std times this.
    :param dict param_state: a fit's param-store state (for ``pyro.param`` sites such as a learned omega).
    :param bool per_unit: return the ``(N,)`` per-unit terms instead of their sum.
    :returns: a scalar tensor (differentiable in ``values``), or ``(N,)`` with ``per_unit``.

    Example (a unit without observations: its marginal likelihood is 1)::

        >>> import dataclasses, torch
        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.models import GreyBoxNODEModel
        >>> units = load_problem("pk_repeated", num_units=4).train
        >>> empty = dataclasses.replace(units, mask=torch.zeros_like(units.mask))
        >>> model = GreyBoxNODEModel("one_compartment_iv")
        >>> values = {"CL_pop": torch.tensor(1.0), "V_pop": torch.tensor(10.0), "omega": torch.tensor([0.3, 0.2]),
        ...           "sigma": torch.tensor([0.1])}
        >>> abs(float(marginal_log_likelihood(model, empty, values, num_samples=2000))) < 0.05
        True
    """
    model = _centred(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    k, N = model.eta_dim, len(units)
    values = {name: v for name, v in values.items() if name not in _PER_UNIT}
    with torch.no_grad():  # pass 1: the effects' prior as proposal (its density cancels in the weights)
        pinned = {name: v.detach() for name, v in values.items()}
        with param_scope(param_state), poutine.block():
            tr = poutine.trace(poutine.condition(model, pinned)).get_trace(
                units.t, units.x, units.y, mask=units.mask, censored=units.censored, doses=units.doses,
                covariates=units.covariates)
        prior = tr.nodes["eta"]["fn"]
        loc0 = prior.base_dist.loc.expand(N, k)
        std0 = prior.base_dist.scale.expand(N, k)
        eta = loc0 + std0 * torch.randn((num_samples, N, k), generator=gen, dtype=loc0.dtype).to(loc0.device)
        logw = _terms(model, units, pinned, eta, param_state) - prior.log_prob(eta)
        w = torch.softmax(logw, 0)[..., None]  # (M, N, 1)
        mean = (w * eta).sum(0)
        dev = eta - mean
        cov = (w[..., None] * dev[..., :, None] * dev[..., None, :]).sum(0)
        cov = cov + torch.diag_embed(1e-4 * std0.pow(2))
        tril = inflate * torch.linalg.cholesky(cov)
    eta = _proposal_draws(mean, tril, num_samples, gen)
    logw = _terms(model, units, values, eta, param_state) - _gauss_log_density(eta, mean, tril)
    out = torch.logsumexp(logw, 0) - torch.log(torch.tensor(float(num_samples), dtype=logw.dtype))
    return out if per_unit else out.sum()


def maximize_marginal_likelihood(model, units, values, num_steps=300, lr=0.05, num_samples=1000, seed=0,
                                 param_state=None):
    """The population values that maximise :func:`marginal_log_likelihood` (Adam in each site's unconstrained
    space, from ``values``; common random numbers, so the objective is a smooth function of the values).

    :param dict values: starting population values (e.g. a fit's posterior medians); every population site.
    :returns: ``(best_values, log_likelihood)`` with the final log-likelihood estimate (a float).
    """
    model = _centred(model)
    values = {name: v for name, v in values.items() if name not in _PER_UNIT}
    with torch.no_grad(), param_scope(param_state), poutine.block():
        tr = poutine.trace(model).get_trace(units.t, units.x, units.y, mask=units.mask, doses=units.doses,
                                            covariates=units.covariates)
    transforms = {name: biject_to(tr.nodes[name]["fn"].support) for name in values}
    free = {name: transforms[name].inv(v.detach().clone()).requires_grad_() for name, v in values.items()}
    opt = torch.optim.Adam(free.values(), lr=lr)

    def current():
        return {name: transforms[name](u) for name, u in free.items()}

    for _ in range(num_steps):
        opt.zero_grad()
        loss = -marginal_log_likelihood(model, units, current(), num_samples, seed, param_state=param_state)
        loss.backward()
        opt.step()
    best = {name: v.detach() for name, v in current().items()}
    final = marginal_log_likelihood(model, units, best, 4 * num_samples, seed + 1, param_state=param_state)
    return best, float(final)
