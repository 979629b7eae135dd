"""Variational baselines: MAP (AutoDelta), mean-field VI (AutoNormal) and low-rank VI, all via ``fit_svi``."""
import time

import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoLowRankMultivariateNormal, AutoNormal, init_to_value
from torch.distributions import biject_to

from ._pyro_compat import replace_model
from .counting import CountingModel
from .result import MethodResult, param_scope
from .svi import fit_svi

__all__ = ["run_map", "run_autonormal", "run_lowrank", "map_values", "latent_dim", "estimate_elbo", "carry_model_params"]


def latent_dim(guide):
    """Number of scalar latent dimensions of a fitted autoguide (its unconstrained latent size)."""
    return sum(int(site["value"].numel()) for _, site in guide.prototype_trace.iter_stochastic_nodes())


def map_values(result):
    """Constrained MAP values ``site -> tensor`` of a :func:`run_map` result (for warm starts)."""
    with torch.no_grad(), param_scope(result.param_state):  # the fit's own params, not the global store's
        return {k: v.detach().clone() for k, v in result.guide.median().items()}


def carry_model_params(result):
    """Put the model's own ``pyro.param`` values of a fitted ``result`` (a learned noise scale ``sigma``) into
    the current param store, so a method started from that fit continues from them instead of re-initialising.

    The guide's parameters (named ``<guide prefix>.*``) are left out.  Does nothing for ``None`` or a result
    without a param state.
    """
    state = getattr(result, "param_state", None)
    if state is None:
        return
    prefix = getattr(result.guide, "prefix", None)
    for name, unconstrained in state["params"].items():
        if prefix and name.startswith(prefix + "."):
            continue
        constraint = state["constraints"][name]
        with torch.no_grad():
            value = biject_to(constraint)(unconstrained.detach()).clone()
        pyro.param(name, value, constraint=constraint)


def estimate_elbo(model, guide, split, num_particles=64, seed=0):
    """A vectorised Monte-Carlo ELBO estimate of ``guide`` (``Trace_ELBO``, ``num_particles`` in one solve)."""
    pyro.set_rng_seed(seed)
    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
    with torch.no_grad():
        return -float(elbo.loss(model, guide, *split.args, **split.kwargs))


def _init_loc(model, seed, init_values):
    if init_values is not None:
        fallback = model.init_loc_fn(seed) if hasattr(model, "init_loc_fn") else None
        return init_to_value(values=init_values, fallback=fallback) if fallback else init_to_value(values=init_values)
    return model.init_loc_fn(seed) if hasattr(model, "init_loc_fn") else None


def _fit_guide(name, model, guide_fn, split, num_steps, lr, num_particles, seed, progress_bar, elbo_particles,
               start=None, **svi_kwargs):
    """Fit ``guide_fn(counted_model)`` with vectorised particles; return a :class:`MethodResult`.

    ``start``: the fit this one starts from; its model parameters (a learned noise scale) are carried over."""
    pyro.clear_param_store()
    carry_model_params(start)
    pyro.set_rng_seed(seed)
    counted = CountingModel(model)
    guide = guide_fn(counted)
    loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    start = time.perf_counter()
    fit = fit_svi(counted, guide, split, num_steps=num_steps, lr=lr, loss=loss, progress_bar=progress_bar,
                  desc=name, **svi_kwargs)
    wall = time.perf_counter() - start
    replace_model(guide, model)  # predictions and ELBO estimates are not fitting cost
    elbo = estimate_elbo(model, guide, split, elbo_particles, seed) if elbo_particles else None
    return MethodResult(name=name, model=model, guide=guide, losses=fit.losses, elbo=elbo, wall_time=wall,
                        num_model_evals=counted.count, stochastic_dim=0 if name == "map" else latent_dim(guide),
                        param_state=pyro.get_param_store().get_state(), train_split=split)


def run_map(model, split, num_steps=1500, lr=2e-2, seed=0, progress_bar=True, **svi_kwargs):
    """MAP estimate of every latent site (``AutoDelta`` from a Glorot initialisation).

    :param model: a Pyro model ``model(t, x, y, mask=...)`` (e.g. :class:`~pyro_node_uq.models.NODEModel`).
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param int num_steps: SVI steps.
    :param float lr: initial learning rate of ``ClippedAdam`` (decays tenfold).
    :param int seed: seed of the initial weights and of Pyro.
    :param bool progress_bar: show a tqdm bar.
    :returns: :class:`MethodResult` with ``elbo=None`` (a point mass has no ELBO) and ``stochastic_dim=0``.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_map(problem.default_model(), problem.train, num_steps=5, progress_bar=False)
        >>> sorted(res.posterior_samples(1))[:2]
        ['R.0.bias', 'R.0.weight']
    """
    def guide_fn(m):
        init = _init_loc(model, seed, None)
        return AutoDelta(m, init_loc_fn=init) if init else AutoDelta(m)

    return _fit_guide("map", model, guide_fn, split, num_steps, lr, 1, seed, progress_bar, 0, **svi_kwargs)


def run_autonormal(model, split, num_steps=1500, lr=1e-2, init_scale=0.02, num_particles=8, map_result=None,
                   map_steps=1000, seed=0, progress_bar=True, elbo_particles=64, **svi_kwargs):
    """Mean-field Gaussian VI (``AutoNormal``) warm-started at a MAP fit.

    :param model: a Pyro model.
    :param split: the training split.
    :param int num_steps: SVI steps.
    :param float lr: initial learning rate.
    :param float init_scale: initial posterior std in the unconstrained space (small: the MAP is a good mean,
        and a wide start makes the ODE solves of early particles wander).
    :param int num_particles: ELBO particles per step, vectorised (one ODE solve for all of them).
    :param MethodResult map_result: a :func:`run_map` result to start from; fitted here if ``None``.
    :param int map_steps: MAP steps when ``map_result`` is ``None`` (counted in ``num_model_evals``).
    :param int seed: seed.
    :param int elbo_particles: particles of the final ELBO estimate (0 to skip).
    :rtype: MethodResult

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_autonormal(problem.default_model(), problem.train, num_steps=3, map_steps=3,
        ...                      progress_bar=False)
        >>> res.stochastic_dim
        259
    """
    map_result = map_result or run_map(model, split, map_steps, seed=seed, progress_bar=progress_bar)
    init = _init_loc(model, seed, map_values(map_result))
    res = _fit_guide("autonormal", model, lambda m: AutoNormal(m, init_loc_fn=init, init_scale=init_scale), split,
                     num_steps, lr, num_particles, seed, progress_bar, elbo_particles, start=map_result,
                     **svi_kwargs)
    res.num_model_evals += map_result.num_model_evals
    res.wall_time += map_result.wall_time
    return res


def run_lowrank(model, split, num_steps=1500, lr=1e-2, rank=None, init_scale=0.02, num_particles=8,
                map_result=None, map_steps=1000, seed=0, progress_bar=True, elbo_particles=64, **svi_kwargs):
    """Low-rank-plus-diagonal Gaussian VI (``AutoLowRankMultivariateNormal``) warm-started at a MAP fit.

    :param int rank: rank of the covariance factor (default: Pyro's ``sqrt(latent_dim)``).
    :param float init_scale: initial scale of the diagonal part.

    Other parameters as :func:`run_autonormal`.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_lowrank(problem.default_model(), problem.train, num_steps=3, map_steps=3, rank=4,
        ...                   progress_bar=False)
        >>> res.name, res.elbo is not None
        ('lowrank', True)
    """
    map_result = map_result or run_map(model, split, map_steps, seed=seed, progress_bar=progress_bar)
    init = _init_loc(model, seed, map_values(map_result))
    guide_fn = lambda m: AutoLowRankMultivariateNormal(m, init_loc_fn=init, init_scale=init_scale, rank=rank)  # noqa
    res = _fit_guide("lowrank", model, guide_fn, split, num_steps, lr, num_particles, seed, progress_bar,
                     elbo_particles, start=map_result, **svi_kwargs)
    res.num_model_evals += map_result.num_model_evals
    res.wall_time += map_result.wall_time
    return res
