"""The log joint density of a :class:`~pyro_node_uq.models.NODEModel` on its data, evaluated without Pyro's effect
handlers: what HMC and NUTS evaluate at every leapfrog step.

Pyro's potential energy runs the model under a trace and a condition handler and then scores the trace (each
site's density, NaN and inf checks, scaling); for a small NODE that costs more than the ODE solve and the
likelihood together.  For the plain NODE model (the class's own model body and component hooks, the initial state
zero or a given tensor, fixed or learned noise scales) the log joint is the weights' ``Normal(0, prior_scale)``
priors plus the observation model's log-likelihood of the data, and :func:`node_log_joint` computes exactly that:
the data checked once when the function is made, then per call the priors in one node of the autograd graph
(:func:`~pyro_node_uq.distributions.normal_loglik.normal_prior_log_prob`), the model's own initial state, noise
scales, solve (:meth:`~pyro_node_uq.models.NODEModel.unit_solve`) and
:class:`~pyro_node_uq.distributions.NODEObservation`.  The value equals the log density of Pyro's trace of the model
(``poutine.trace(poutine.condition(model, values)).get_trace(...).log_prob_sum()``) to rounding.  Models outside
that set (subclasses with their own hooks or body, latent noise scales, a learned or input-dependent initial
state, ``new_units``, no observations) get ``None`` and keep Pyro's potential.
"""
import torch

from ..distributions import NODEObservation
from ..distributions.normal_loglik import normal_prior_log_prob
from ..nn import resolve_prior_scale
from ..utils.tensors import broadcast_shapes, expanded
from .unit_data import UnitData

__all__ = ["node_log_joint"]

_HOOKS = ("__call__", "population_sites", "unit_sites", "unit_field", "unit_solve", "unit_mean", "_initial_state",
          "_noise_scale", "_call_data", "_scaled_doses", "weight_shapes")


def _covered(model):
    """Whether the model's log joint is the weights' priors plus the likelihood (module docstring): its class's
    body and hooks are those of the class that made this function its ``log_joint_fn`` (the NODE model)."""
    base = next((c for c in type(model).__mro__ if "log_joint_fn" in vars(c)), None)
    if base is None or any(getattr(type(model), h) is not getattr(base, h, None) for h in _HOOKS):
        return False
    fixed_init = not isinstance(model.init, str) or model.init == "zero"
    return fixed_init and "latent" not in (model.scale, model.prop_scale)


def node_log_joint(model, t, x=None, y=None, mask=None, x_times=None, num_trajectories=None, *, doses=None,
                   t_mask=None, censored=None, t0=None, covariates=None, new_units=False):
    """``log_joint(values) -> 0-dim tensor``: the log joint density of ``model`` on these data (the arguments of
    its call) at the latent values ``{site: value}`` (the weights, each of its event shape), or ``None`` when
    the model is not covered (module docstring).  The data are checked here, once.

    :param NODEModel model: the model.
    :returns: the function, with the attribute ``sites`` (the latent sites it takes), or ``None``.

    Example::

        >>> import pyro
        >>> from pyro import poutine
        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2, dtype=torch.float64)
        >>> model, data = problem.default_model(R_hidden=(4,)), problem.train
        >>> log_joint = node_log_joint(model, *data.args)
        >>> values = {k: torch.zeros(s, dtype=torch.float64) for k, s in model.weight_shapes().items()}
        >>> pyro_value = poutine.trace(poutine.condition(model, values)).get_trace(*data.args).log_prob_sum()
        >>> bool(torch.isclose(log_joint(values), pyro_value, rtol=1e-12))
        True
    """
    if y is None or new_units or not _covered(model):
        return None
    y, mask, covariates, censored, N = model._call_data(t, x, y, mask, x_times, covariates, censored, doses,
                                                        num_trajectories, t_mask)
    shapes = model.weight_shapes()
    scales = [resolve_prior_scale(site, model.prior_scale) for site in shapes]
    doses = model._scaled_doses(doses)
    units = UnitData(torch.arange(N, device=t.device), t, x, x_times, covariates, False)
    options = {"t_mask": t_mask, "doses": doses, "t0": t0, "obs_dim": model.obs_dim,
               "interpolation": model.interpolation, "solver": model.solver}

    # the initial state and fixed noise scales do not depend on the latent values: made once (a learned scale is
    # read from the parameter store at each call)
    h0 = model._initial_state({}, x, t)
    fixed = {name: model._noise_scale(t, spec, name) for spec, name in ((model.scale, "sigma"),
             (model.prop_scale, "sigma_prop")) if spec is not None and not isinstance(spec, str)}

    def log_joint(values):
        params = {}
        for site, shape in shapes.items():
            if values[site].shape != shape:
                raise ValueError(f"values[{site!r}]: expected the site's event shape {tuple(shape)}, got "
                                 f"{tuple(values[site].shape)} (one point, no batch dims)")
            params[site] = values[site]
        prior = normal_prior_log_prob(list(params.values()), scales)
        scale = fixed.get("sigma")
        scale = model._noise_scale(t) if scale is None else scale
        prop = fixed.get("sigma_prop")
        if prop is None and model.prop_scale is not None:
            prop = model._noise_scale(t, model.prop_scale, "sigma_prop")
        R, p, xu, xt = model.unit_field(params, None, {}, units)
        sol = model.unit_solve(R, p, t, xu, h0, x_times=xt, on_divergence=model.on_divergence, **options)
        mean = model.unit_mean(sol.mean, None, {}, units)
        mean = expanded(mean, broadcast_shapes(mean.shape[:-2], (N,)) + mean.shape[-2:])
        obs = NODEObservation(mean, scale, model.law, prop_scale=prop, mask=mask, censored=censored,
                              diverged=sol.diverged)
        return prior + obs.log_prob(y).sum()

    log_joint.sites = list(shapes)
    return log_joint
