"""The layer-wise runner: :class:`~pyro_node_uq.infer.AutoLayerwise` fitted with ``fit_svi`` into a MethodResult."""
from .autoguide import AutoLangevin, AutoLayerwise
from .baselines import _fit_guide, _init_loc, latent_dim, map_values, run_map

__all__ = ["run_layerwise"]


def run_layerwise(model, split, subset="last_layer", stochastic=None, guide=AutoLangevin, guide_kwargs=None,
                  num_steps=1500, lr=1e-2, num_particles=8, map_result=None, map_steps=1000, seed=0,
                  progress_bar=True, elbo_particles=64, name=None, **svi_kwargs):
    """Layer-wise stochastic VI: ``subset`` (or ``stochastic`` patterns) sampled by ``guide``, the rest point
    estimates re-optimised jointly, optionally warm-started at a MAP fit.

    :param model: a Pyro model (a :class:`~pyro_node_uq.models.NODEModel` for ``subset``).
    :param split: the training split.
    :param str subset: ``"last_layer"`` or ``"first_layer"``; ignored when ``stochastic`` is given.
    :param stochastic: site patterns or network names of the stochastic sites (see :class:`AutoLayerwise`).
    :param type guide: autoguide class of the stochastic sites (default ``AutoLangevin``).
    :param dict guide_kwargs: its keyword arguments.
    :param int num_steps: SVI steps.
    :param float lr: initial learning rate.
    :param int num_particles: ELBO particles per step, vectorised.
    :param MethodResult map_result: a :func:`run_map` result to start from (point sites and the stochastic
        guide's location); fitted here with ``map_steps`` steps if ``None`` and ``map_steps > 0``; its cost is
        added to ``wall_time`` and ``num_model_evals``.
    :param int map_steps: MAP steps when ``map_result`` is ``None`` (0: start from the Glorot initialisation).
    :param int seed: seed.
    :param int elbo_particles: particles of the final ELBO estimate (0 to skip).
    :param str name: method name (default ``"layerwise_<subset>"`` or ``"layerwise"``).
    :returns: :class:`MethodResult` whose ``stochastic_dim`` counts the stochastic sites only.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_layerwise(problem.default_model(), problem.train, guide_kwargs={"num_steps": 2},
        ...                     num_steps=3, map_steps=3, progress_bar=False)
        >>> res.name, res.stochastic_dim
        ('layerwise_last_layer', 99)
    """
    if map_result is None and map_steps > 0:
        map_result = run_map(model, split, map_steps, seed=seed, progress_bar=progress_bar)
    init = _init_loc(model, seed, map_values(map_result) if map_result is not None else None)
    if stochastic is None:
        select = {"subset": subset}
        name = name or f"layerwise_{subset}"
    else:
        select = {"stochastic": stochastic}
        name = name or "layerwise"
    guide_fn = lambda m: AutoLayerwise(m, guide=guide, init_loc_fn=init, **select, **(guide_kwargs or {}))  # noqa
    res = _fit_guide(name, model, guide_fn, split, num_steps, lr, num_particles, seed, progress_bar, elbo_particles,
                     start=map_result, **svi_kwargs)
    res.stochastic_dim = latent_dim(res.guide.stochastic_guide)
    if map_result is not None:
        res.num_model_evals += map_result.num_model_evals
        res.wall_time += map_result.wall_time
    return res
