"""ArviZ ``InferenceData`` of any Pyro model from a guide, an ``MCMC`` run or a dict of draws.

The draws are pushed through the model in one vectorised trace (``Predictive``).  ``Predictive`` runs the model
under ``poutine.mask(False)``, so the trace's own ``log_prob`` entries are zero: the pointwise log-likelihood is
computed here from each observed site's distribution (``fn.log_prob(value)``, as ``az.from_pyro`` does), times
the mask the model itself puts on the site (``poutine.mask`` / ``obs_mask``), read from one plain trace of the
first draw.  That plain trace also gives each site's own shape, so the singleton dims the vectorisation adds are
dropped and ``observed_data``, ``posterior_predictive`` and ``log_likelihood`` line up.
"""
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, Predictive
from pyro.poutine.util import prune_subsample_sites

from ..methods.result import guide_samples
from .az_convert import from_dict
from .az_convert import numpy as _numpy

__all__ = ["mcmc_to_inference_data", "model_inference_data"]


def _shaped(value, S, shape):
    """``value`` ``(S, ...)`` as ``(S,) + shape`` when it holds exactly that many numbers (the vectorisation's
    singleton dims dropped), else unchanged."""
    if value.dim() == 0:
        value = value.expand(S)
    if value.shape[0] != S:
        value = value.expand((S,) + value.shape)
    return value.reshape((S,) + tuple(shape)) if value.numel() == S * torch.Size(shape).numel() else value


def _max_plate_nesting(trace):
    dims = [-f.dim for s in trace.nodes.values() if s["type"] == "sample"
            for f in s["cond_indep_stack"] if f.vectorized and f.dim is not None]
    return max(dims, default=0)


def _chains(draws, num_chains):
    S = next(iter(draws.values())).shape[0]
    if S % num_chains:
        raise ValueError(f"num_chains: {S} draws do not split into {num_chains} equal chains")
    return {k: v.detach().reshape((num_chains, S // num_chains) + v.shape[1:]) for k, v in draws.items()}


def _mcmc_draws(mcmc):
    """``(draws (C, D, ...), sample_stats)`` of an ``MCMC`` run, ensemble particles as chains."""
    from ..infer.mcmc import particles_to_chains

    samples = mcmc.get_samples(group_by_chain=True)
    P = int(getattr(mcmc.kernel, "num_particles", 1))
    if P > 1:
        samples = particles_to_chains(samples, P)
    C, D = next(iter(samples.values())).shape[:2]
    diverging = torch.zeros(C, D, dtype=torch.bool)
    diag = mcmc.diagnostics()
    for c in range(mcmc.num_chains):
        by_particle = diag.get("divergences by particle", {}).get(f"chain {c}")
        for p, steps in enumerate(by_particle if by_particle is not None else [diag["divergences"][f"chain {c}"]]):
            diverging[c * P + p, steps] = True
    return samples, {"diverging": diverging}


def model_inference_data(posterior, model, *args, num_samples=400, num_chains=4, seed=0, **kwargs):
    """``InferenceData`` of any Pyro ``model`` given a posterior: groups ``posterior`` (latent and deterministic
    sites), ``posterior_predictive``, ``log_likelihood`` and ``observed_data`` (every observed site), and
    ``sample_stats`` (``diverging``) for MCMC.

    The log-likelihood holds one value per element of each observed site's batch shape (its event dims summed),
    the same entries as ``az.from_pyro``; masks the model puts on a site (``poutine.mask``, ``obs_mask``,
    ``fn.mask(...)``) give 0 where masked.

    :param posterior: a guide (any callable taking the model's arguments, e.g. an ``AutoGuide``), a
        ``pyro.infer.MCMC`` after ``run`` (ensemble particles become chains) or a dict ``site -> (S, ...)`` of
        draws.
    :param model: the Pyro model.
    :param args: the model's positional arguments (the data).
    :param int num_samples: draws taken from a guide.
    :param int num_chains: independent groups the draws of a guide or dict are split into (MCMC keeps its own).
    :param int seed: seed of the guide's draws and the predictive noise.
    :param kwargs: the model's keyword arguments.
    :rtype: arviz.InferenceData

    Example::

        >>> import arviz as az, pyro, pyro.distributions as dist, torch
        >>> from pyro.infer.autoguide import AutoNormal
        >>> def model(x, y=None):
        ...     w = pyro.sample("w", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(x)):
        ...         return pyro.sample("y", dist.Normal(w * x, 0.5), obs=y)
        >>> x, y = torch.linspace(-1, 1, 10), torch.linspace(-1, 1, 10)
        >>> guide = AutoNormal(model)
        >>> _ = guide(x, y)  # initialise its parameters (normally: fit it with SVI)
        >>> idata = model_inference_data(guide, model, x, y, num_samples=40)
        >>> idata.log_likelihood["y"].shape, idata.posterior_predictive["y"].shape
        ((4, 10, 10), (4, 10, 10))
    """
    from ..validation import check_int

    stats = None
    if isinstance(posterior, MCMC):
        draws, stats = _mcmc_draws(posterior)
    elif isinstance(posterior, dict):
        draws = _chains(posterior, check_int(num_chains, "num_chains", 1))
    elif callable(posterior):
        num_samples, num_chains = check_int(num_samples, "num_samples", 1), check_int(num_chains, "num_chains", 1)
        pyro.set_rng_seed(seed)
        with torch.no_grad():
            nesting = _max_plate_nesting(poutine.trace(model).get_trace(*args, **kwargs))
        draws = _chains(guide_samples(posterior, num_samples, args, kwargs, nesting), num_chains)
    else:
        raise TypeError(f"posterior: expected a guide, a pyro.infer.MCMC or a dict of draws, got "
                        f"{type(posterior).__name__}")
    if not draws:
        raise ValueError("posterior: it has no latent sites to convert")
    C, D = next(iter(draws.values())).shape[:2]
    S = C * D
    flat = {k: v.reshape((S,) + v.shape[2:]) for k, v in draws.items()}
    with torch.no_grad():
        first = {k: v[0] for k, v in flat.items()}
        plain = prune_subsample_sites(poutine.trace(poutine.condition(model, first)).get_trace(*args, **kwargs))
        pyro.set_rng_seed(seed)
        trace = Predictive(model, posterior_samples=flat, num_samples=S, parallel=True) \
            .get_vectorized_trace(*args, **kwargs)
    unknown = sorted(set(flat) - set(plain.nodes))
    if unknown:
        raise ValueError(f"posterior: sites {unknown} are not sample sites of the model; its sites are "
                         f"{sorted(n for n, s in plain.nodes.items() if s['type'] == 'sample')}")
    if not any(s["type"] == "sample" and s["is_observed"] and not s["infer"].get("_deterministic")
               and n not in flat for n, s in plain.nodes.items()):
        raise ValueError("model: it has no observed sample site (pass the data as the model's arguments)")
    missing = sorted(n for n, s in plain.nodes.items() if s["type"] == "sample" and not s["is_observed"]
                     and n not in flat and not s["infer"].get("_deterministic"))
    if missing:  # Predictive would draw them from the prior and report them as the posterior
        raise ValueError(f"posterior: no draws of the model's latent sites {missing}")
    posterior_group = {k: _numpy(v) for k, v in draws.items()}
    log_lik, predictive, observed = {}, {}, {}
    for name, site in plain.nodes.items():
        if site["type"] != "sample" or name in flat:
            continue
        fn, value = trace.nodes[name]["fn"], trace.nodes[name]["value"]
        if site["infer"].get("_deterministic"):
            value = _shaped(value, S, site["value"].shape)
            posterior_group[name] = _numpy(value.reshape((C, D) + value.shape[1:]))
            continue
        if not site["is_observed"]:
            continue
        with torch.no_grad():
            lp = fn.log_prob(site["value"])
            if site["mask"] is not None:  # the model's own mask (Predictive's mask(False) hides it in `trace`)
                lp = torch.where(torch.as_tensor(site["mask"], device=lp.device), lp, torch.zeros_like(lp))
            batch = site["value"].shape[: site["value"].dim() - len(site["fn"].event_shape)]
            lp = _shaped(lp, S, batch)
            pred = _shaped(fn.sample(), S, site["value"].shape)
        log_lik[name] = _numpy(lp.double().reshape((C, D) + lp.shape[1:]))
        predictive[name] = _numpy(pred.reshape((C, D) + pred.shape[1:]))
        observed[name] = _numpy(site["value"])
    return from_dict(posterior=posterior_group, posterior_predictive=predictive, log_likelihood=log_lik,
                     observed_data=observed, sample_stats={k: _numpy(v) for k, v in stats.items()} if stats else None,
                     attrs={"inference_library": "pyro", "method": type(posterior).__name__})


def mcmc_to_inference_data(mcmc, *args, **kwargs):
    """Any Pyro ``MCMC`` run of any Pyro model to ``InferenceData``, with ensemble kernels' particles as chains.

    ``az.from_pyro`` sees the P particles of an ensemble :class:`~pyro_node_uq.infer.LangevinKernel` as a
    variable dimension and cannot compute their log-likelihood; here every particle of every chain is a chain
    (``chain = c * P + p``), so R-hat, ESS and ``az.loo`` treat them as the independent chains they are.  The
    pointwise log-likelihood is that of ``az.from_pyro`` (see :func:`model_inference_data`).

    :param mcmc: a ``pyro.infer.MCMC`` after ``run``.
    :param args: the model's arguments (the data), as given to ``mcmc.run``.
    :param kwargs: the model's keyword arguments.
    :returns: ``InferenceData`` with ``posterior``, ``posterior_predictive``, ``log_likelihood`` and
        ``observed_data`` (every observed site) and ``sample_stats`` (``diverging`` per chain and draw).

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro.infer import MCMC, NUTS
        >>> def coin(flips):
        ...     p = pyro.sample("p", dist.Beta(2.0, 2.0))
        ...     with pyro.plate("flips", len(flips)):
        ...         pyro.sample("obs", dist.Bernoulli(p), obs=flips)
        >>> flips = torch.tensor([1.0, 0.0, 1.0, 1.0])
        >>> mcmc = MCMC(NUTS(coin), num_samples=20, warmup_steps=20, disable_progbar=True)
        >>> mcmc.run(flips)
        >>> ll = mcmc_to_inference_data(mcmc, flips).log_likelihood["obs"]
        >>> ll.shape, bool((ll < 0).all())
        ((1, 20, 4), True)
    """
    return model_inference_data(mcmc, mcmc.kernel.model, *args, **kwargs)
