"""Conversion of any method's posterior to ArviZ ``InferenceData`` with the same groups, dims and coords.

ArviZ's conversion API is called in one place, :mod:`~pyro_node_uq.diagnostics.az_convert`: moving to
``arviz-base`` is one change there.  The posterior draws are pushed through the model in ONE vectorised trace
(:func:`~pyro_node_uq.methods.conditioned_trace`; ``Predictive`` for a model that does not state its
``max_plate_nesting``), whose observation site gives the pointwise log-likelihood, the posterior predictive draws and the deterministic
sites (``y_mean``, ``hidden``) together.
"""
import pyro
import torch
from pyro.infer import MCMC, Predictive
from pyro.infer.autoguide import AutoGuide
from pyro.poutine.util import site_is_subsample

from ..methods.result import (
    MethodResult,
    conditioned_trace,
    guide_samples,
    set_draw_params,
)
from ..models.protocol import ProcessModel
from ..utils.seeding import param_scope
from ..validation import check_int
from .arviz_pyro import mcmc_to_inference_data, model_inference_data
from .arviz_static import static_inference_data
from .az_convert import from_dict
from .az_convert import numpy as _numpy
from .pointwise import pointwise_log_likelihood

__all__ = ["mcmc_to_inference_data", "model_inference_data", "pointwise_log_likelihood", "to_inference_data"]



def _posterior_draws(obj, split, model, num_samples, num_chains, seed):
    """``(model, draws site -> (C, D, ...), param_state, sample_stats)`` from any supported object."""
    stats = None
    if isinstance(obj, MethodResult):
        model, state, stats = obj.model, obj.param_state, obj.sample_stats
        if obj.samples is not None:
            draws = obj.samples
            if obj.mcmc is not None and stats is None:
                stats = _mcmc_stats(obj.mcmc)
        else:
            on_inputs = split if model.latent_on_inputs else None  # latents of the split's own inputs
            flat = obj.posterior_samples(num_samples, seed=seed, split=on_inputs)  # given the data it was fitted on
            draws = _as_chains(flat, num_chains)
        return model, draws, state, stats
    if isinstance(obj, MCMC):
        return obj.kernel.model, obj.get_samples(group_by_chain=True), None, _mcmc_stats(obj)
    if model is None:
        raise ValueError("model: converting a guide or a dict of particles needs the Pyro model")
    if isinstance(obj, AutoGuide) or callable(obj) and not isinstance(obj, dict):
        pyro.set_rng_seed(seed)
        return model, _as_chains(guide_samples(obj, num_samples, split.args, split.kwargs), num_chains), None, None
    if isinstance(obj, dict):
        return model, _as_chains(obj, num_chains), None, None
    raise TypeError(f"to_inference_data: expected a MethodResult, pyro.infer.MCMC, guide or dict of particles, "
                    f"got {type(obj).__name__}")


def _as_chains(flat, num_chains):
    """Split draws ``(S, ...)`` into ``num_chains`` independent groups ``(C, S // C, ...)``."""
    if not flat:  # a point estimate with no latent sites (an ODE-net): reported by the caller
        return {}
    S = next(iter(flat.values())).shape[0]
    if S % num_chains:
        raise ValueError(f"num_chains: {S} draws do not split into {num_chains} equal chains")
    return {k: v.detach().reshape((num_chains, S // num_chains) + v.shape[1:]) for k, v in flat.items()}


def _mcmc_stats(mcmc):
    """Per-draw ``diverging`` and the chain's mean ``acceptance_rate`` from Pyro's ``MCMC.diagnostics()``."""
    diag = mcmc.diagnostics()
    C, D = mcmc.num_chains, mcmc.num_samples
    stats = {}
    if "divergences" in diag:
        diverging = torch.zeros(C, D, dtype=torch.bool)
        for c in range(C):
            diverging[c, diag["divergences"][f"chain {c}"]] = True
        stats["diverging"] = diverging
    if "acceptance rate" in diag:  # Pyro reports one mean per chain: broadcast over the chain's draws
        rate = torch.tensor([float(diag["acceptance rate"][f"chain {c}"]) for c in range(C)])
        stats["acceptance_rate"] = rate[:, None].expand(C, D)
    return stats or None



def _per_unit_dims(trace, posterior, dims, C, D, obs_site):
    """Latent and deterministic sites inside the units' plate (random effects) keep a ``trajectory`` dim.  The
    units' plate is the observed site's rightmost batch plate (dim -1: one trajectory per entry), whatever its
    name."""
    units = {f.name for f in trace.nodes[obs_site]["cond_indep_stack"] if f.dim == -1}
    for name, site in trace.nodes.items():
        in_plate = any(f.name in units for f in site.get("cond_indep_stack", ()))
        if site["type"] != "sample" or not in_plate or name in dims:  # the observed site has its dims already
            continue
        if name not in posterior:
            if not site["infer"].get("_deterministic"):
                continue
            value = site["value"]
            posterior[name] = _numpy(value.reshape((C, D) + value.shape[value.dim() - 1 - len(site["fn"].event_shape):]))
        dims[name] = ["trajectory"] + [f"{name}_dim_{i}" for i in range(posterior[name].ndim - 3)]


def to_inference_data(obj, split, *args, model=None, num_samples=400, num_chains=4, seed=0, output_names=None,
                      input_names=None, obs_site="obs", deterministic=("y_mean", "hidden"), **kwargs):
    """ArviZ ``InferenceData`` of a posterior on ``split``, or of any Pyro model:
    ``to_inference_data(guide, model, *args, **kwargs)`` (a plain Pyro model given its arguments: see
    :func:`~pyro_node_uq.diagnostics.arviz_pyro.model_inference_data`).

    Groups: ``posterior`` (latent sites plus the deterministic ``y_mean`` / ``hidden``), ``posterior_predictive``
    (``obs``), ``log_likelihood`` (``obs`` per trajectory, time and output: every observed entry, the same
    entries and dims as ``observed_data``, so ``az.loo`` scores exactly the observations), ``observed_data``
    (``obs``), ``constant_data`` (``t``, ``x``, ``mask``), and ``sample_stats`` for MCMC.  Dims ``trajectory`` (coords: ``split.ids``), ``time`` (coords: ``split.t``),
    ``output``, ``input``, ``state``.

    When ``split.mask`` marks some points unobserved, or trajectories have their own (padded) times,
    ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` hold the observed (trajectory, time) points
    only, along one flat dim ``observation`` (then ``output``) with coordinates ``obs_trajectory`` and
    ``obs_time``: LOO and ``plot_ppc`` then see the real observations, not the unobserved grid points (an output
    masked at an observed time is NaN in ``observed_data`` and 0 in ``log_likelihood``).  The ``posterior``
    keeps ``y_mean`` / ``hidden`` on the full grid.

    :param obj: a :class:`~pyro_node_uq.infer.MethodResult`, a ``pyro.infer.MCMC``, a guide (with ``model``)
        or a dict ``site -> (S, ...)`` of particles (with ``model``).
    :param split: the :class:`~pyro_node_uq.data.Split` the likelihood and predictions are evaluated on; or
        the Pyro model itself, then followed by its arguments ``args`` and keyword arguments ``kwargs``.
    :param model: the Pyro model ``model(t, x, y, mask=..., num_trajectories=...)`` (guides and particles).
    :param int num_samples: draws taken from a guide (``num_chains`` groups of ``num_samples // num_chains``).
    :param int num_chains: chains for guide draws and particles (independent groups, so R-hat is meaningful);
        MCMC keeps its own chains.
    :param int seed: seed of guide draws and predictive noise.
    :param output_names: coords of the ``output`` dim (default ``0..D-1``).
    :rtype: arviz.InferenceData

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro_node_uq.data import Split
        >>> def model(t, x=None, y=None, mask=None, num_trajectories=None):
        ...     mu = pyro.sample("mu", dist.Normal(0., 1.))  # batched draws: (S, 1), left of the plate
        ...     fn = dist.Normal(mu[..., None, None], 1.).expand(mu.shape + (len(t), 1)).to_event(2)
        ...     with pyro.plate("trajectories", num_trajectories or y.shape[0], dim=-1):
        ...         return pyro.sample("obs", fn, obs=y)
        >>> split = Split(t=torch.arange(3.), x=None, y=torch.zeros(2, 3, 1))
        >>> idata = to_inference_data({"mu": torch.randn(40)}, split, model=model)
        >>> idata.log_likelihood["obs"].dims
        ('chain', 'draw', 'trajectory', 'time', 'output')
    """
    if not hasattr(split, "args") and callable(split):  # a plain Pyro model and its arguments
        return model_inference_data(obj, split, *args, num_samples=num_samples, num_chains=num_chains, seed=seed,
                                    **kwargs)
    if args or kwargs:
        raise TypeError(f"to_inference_data: a split takes no model arguments, got {len(args)} positional and "
                        f"{sorted(kwargs)} keyword ones")
    num_samples, num_chains = check_int(num_samples, "num_samples", 1), check_int(num_chains, "num_chains", 1)
    if isinstance(obj, MethodResult):
        split = obj.in_fit_dtype(split)
    model, draws, state, stats = _posterior_draws(obj, split, model, num_samples, num_chains, seed)
    new_sites = _new_unit_sites(model, split)
    draws = {k: v for k, v in draws.items() if k not in new_sites}  # the fitted units' effects: not these units'
    if not draws:
        raise ValueError("to_inference_data: the posterior has no latent sites to convert")
    C, D = next(iter(draws.values())).shape[:2]
    flat = {k: v.reshape((C * D,) + v.shape[2:]) for k, v in draws.items()}
    own = obj.draw_params if isinstance(obj, MethodResult) and obj.samples is not None else None
    own = {k: v.reshape((C * D,) + v.shape[2:]) for k, v in (own or {}).items()}  # a deep ensemble's noise scales
    pyro.set_rng_seed(seed)
    with param_scope(state), torch.no_grad():
        set_draw_params(own)
        if getattr(model, "max_plate_nesting", None) is not None:  # one trace, no prior draws (whose solves may diverge)
            trace = conditioned_trace(model, flat, C * D, split.args, split.kwargs)
        else:
            trace = Predictive(model, posterior_samples=flat, num_samples=C * D, parallel=True) \
                .get_vectorized_trace(*split.args, **split.kwargs)
    _check_sites(trace, flat, obs_site, drawn=new_sites)
    for name in new_sites & set(trace.nodes):  # the new units' effects, drawn from the posterior's population
        value = trace.nodes[name]["value"]
        draws[name] = value.reshape((C, D) + value.shape[value.dim() - 1 - len(trace.nodes[name]["fn"].event_shape):])
    attrs = {"inference_library": "pyro", "method": getattr(obj, "name", type(obj).__name__)}
    if isinstance(model, ProcessModel) and model.obs_dims != ProcessModel.obs_dims:  # independent (x, y) pairs
        return static_inference_data(trace, draws, split, model.obs_dims, obs_site, output_names, input_names,
                                     stats, attrs)
    site = trace.nodes[obs_site]
    y = site["value"]
    N, T, out_dim = y.shape[-3:]
    log_lik = pointwise_log_likelihood(site["fn"], y).expand((C * D,) + y.shape[-3:]).reshape(C, D, N, T, out_dim)
    with torch.no_grad():
        pred = site["fn"].sample().reshape(C, D, N, T, out_dim)
    posterior = {k: _numpy(v) for k, v in draws.items()}
    posterior.update({k: _numpy(v.reshape((C, D) + v.shape[1:])) for k, v in own.items()})
    per_unit = split.t.dim() == 2  # each trajectory its own (padded) times: "time" is a position, t is data
    dims = {obs_site: ["trajectory", "time", "output"], "x": ["trajectory", "time", "input"],
            "mask": ["trajectory", "time", "output"], "t": ["trajectory", "time"] if per_unit else ["time"]}
    for name in deterministic:
        if name in trace.nodes:
            value = trace.nodes[name]["value"]
            posterior[name] = _numpy(value.reshape((C, D) + value.shape[-3:]))
            dims[name] = ["trajectory", "time", "output" if name == "y_mean" else "state"]
    _per_unit_dims(trace, posterior, dims, C, D, obs_site)
    observed = y.clone()
    mask = _observed_mask(split, y.shape)
    if mask is not None:
        observed = torch.where(mask, observed, torch.full_like(observed, float("nan")))
    constant = {"t": _numpy(split.t)}
    if split.x is not None:
        constant["x"] = _numpy(split.x)
    if mask is not None:
        constant["mask"] = _numpy(mask)
    coords = {"trajectory": _numpy(split.ids), "time": list(range(T)) if per_unit else _numpy(split.t),
              "output": list(output_names) if output_names is not None else list(range(out_dim))}
    if split.x is not None:
        coords["input"] = list(input_names) if input_names is not None else list(range(split.x.shape[-1]))
    data_dims = {obs_site: ["trajectory", "time", "output"]}
    data_coords = coords
    if mask is not None:  # keep the observed (trajectory, time) points only, along a flat dim
        seen = mask.any(-1)
        idx = torch.nonzero(seen)
        log_lik, pred, observed = log_lik[:, :, seen], pred[:, :, seen], observed[seen]
        data_dims = {obs_site: ["observation", "output"]}
        data_coords = {"observation": list(range(len(idx))), "output": coords["output"]}
    idata = from_dict(
        posterior=posterior, constant_data=constant,
        sample_stats={k: _numpy(v) for k, v in stats.items()} if stats else None,
        coords=coords, dims={k: v for k, v in dims.items() if k != obs_site}, attrs=attrs)
    idata.extend(from_dict(posterior_predictive={obs_site: _numpy(pred)},
                              observed_data={obs_site: _numpy(observed)}, coords=data_coords, dims=data_dims,
                              attrs=attrs))
    if mask is not None:  # one log-likelihood value per observed point, as in observed_data
        idata.extend(from_dict(log_likelihood={obs_site: _numpy(log_lik.double())}, coords=data_coords,
                                  dims=data_dims, attrs=attrs))
        where = {"obs_trajectory": ("observation", _numpy(split.ids[idx[:, 0]])),
                 "obs_time": ("observation", _numpy(split.t[idx[:, 0], idx[:, 1]] if per_unit else
                                                   split.t[idx[:, 1]]))}
        for group in ("posterior_predictive", "observed_data", "log_likelihood"):
            setattr(idata, group, getattr(idata, group).assign_coords(where))
        return idata
    idata.extend(from_dict(log_likelihood={obs_site: _numpy(log_lik.double())}, coords=coords,
                              dims=data_dims, attrs=attrs))
    return idata


def _observed_mask(split, shape):
    """Observed entries ``(N, T, outputs)``: the split's mask and the real entries of per-trajectory times
    (``t_mask`` among its model arguments); ``None`` when every entry of a shared grid is observed."""
    mask, t_mask = split.mask, split.kwargs.get("t_mask")
    if mask is not None and mask.dim() == 2:
        mask = mask[..., None].expand(shape)
    if t_mask is not None:
        mask = t_mask[..., None].expand(shape) if mask is None else mask & t_mask[..., None]
    if mask is None and split.t.dim() == 2:  # per-unit times: the flat layout, which carries each entry's time
        mask = torch.ones(shape, dtype=torch.bool, device=split.t.device)
    return mask


def _new_unit_sites(model, split):
    """The per-unit latent sites of a model with random effects when ``split`` holds units it was not fitted on
    (``new_units``): the fitted units' draws of them do not apply, and the trace draws these units' own effects
    from the population (their posterior predictive), as :meth:`MethodResult.predict` does."""
    kwargs = getattr(split, "kwargs", None) or {}
    if not kwargs.get("new_units") or not hasattr(model, "per_unit_sites"):
        return set()
    return set(model.per_unit_sites())


def _check_sites(trace, draws, obs_site, drawn=()):
    """The draws must name exactly the model's latent sites: a misspelt or missing site would be drawn from the
    prior by ``Predictive`` and scored as if it were the posterior.  ``drawn`` names sites the trace may draw
    (new units' effects, from the population)."""
    if obs_site not in trace.nodes or trace.nodes[obs_site]["type"] != "sample":
        sites = [n for n, s in trace.nodes.items() if s["type"] == "sample" and s["is_observed"]]
        raise ValueError(f"obs_site: the model has no observed sample site {obs_site!r}; observed sites: {sites}")
    # Predictive conditions the model on the draws: a latent site it did not get a draw for is sampled (unobserved)
    prior = {n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
             and not site_is_subsample(s) and not s["infer"].get("_deterministic")}
    unknown, missing = sorted(set(draws) - set(trace.nodes)), sorted(prior - set(draws) - set(drawn))
    if unknown or missing:
        latent = sorted((set(draws) & set(trace.nodes)) | prior)
        raise ValueError(f"to_inference_data: the posterior draws do not match the model's latent sites: unknown "
                         f"{unknown}, missing {missing} (a missing site would be drawn from the prior and scored as "
                         f"the posterior); the model's latent sites are {latent}")
