"""Mean-field Gaussian VI (Pyro's ``AutoNormal``) warm-started at a MAP fit."""
from pyro.infer.autoguide import AutoNormal

from .common import as_process_model, fit_guide, init_loc, map_values, start_from
from .laplace_start import LaplaceStarted
from .registry import GAUSSIAN_GUIDE_PROBLEMS, GuideRecipe, register

__all__ = ["run_autonormal"]


@register("autonormal", "mean-field Gaussian VI (AutoNormal), from MAP", start="map", demo=True,
          defaults={"num_steps": 1000, "num_particles": 8}, problems=GAUSSIAN_GUIDE_PROBLEMS,
          # quick: the 150-step MAP start is far from its mode, and 100 steps from std 5e-3 leave the guide too narrow
          quick={"num_steps": 100, "num_particles": 4, "elbo_particles": 16, "init_scale": 0.02},
          guide=GuideRecipe("autonormal", AutoNormal, {"init_scale": 0.05}))
def run_autonormal(model, split, *, warm_start=None, num_steps=1000, lr=1e-2, init_scale=5e-3, laplace=True,
                   num_particles=8, map_steps=None, seed=0, progress_bar=True, elbo_particles=64, **svi_kwargs):
    """Mean-field Gaussian VI (``AutoNormal``) started at a MAP fit.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` or a plain Pyro model.
    :param split: the training split.
    :param MethodResult warm_start: the fit whose point values are the initial means (a MAP fit); fitted here
        with ``map_steps`` steps when ``None``.  Its cost is included in the result's.
    :param int num_steps: the most SVI steps; the fit stops earlier when its loss has converged.
    :param float lr: initial learning rate.
    :param float init_scale: initial posterior std in the unconstrained space (small: the MAP is a good mean, its
        L-BFGS polished basin is narrow, and a wide start makes the ODE solves of early particles wander and, where
        the model learns its noise scale, widens that scale to cover the guide's own spread; measured in the
        AutoLangevin docs' mixture section); with ``laplace`` the widest start.
    :param bool laplace: start each coordinate's std at its Laplace width at the warm start,
        :math:`\\min(\\text{init\\_scale}, H_{ii}^{-1/2})`, and move each mean in units of its width
        (:func:`~pyro_node_uq.methods.laplace_start.laplace_start`); without a warm start every std starts at
        ``init_scale``.
    :param int num_particles: ELBO particles per step, vectorised (one ODE solve for all of them).
    :param int map_steps: MAP steps when ``warm_start`` is ``None`` (default: :func:`run_map`'s; 0: start at the
        model's initialisation).
    :param int seed: seed.
    :param bool progress_bar: show a tqdm bar.
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
    model = as_process_model(model, split)
    start = start_from("map", warm_start, model, split, seed=seed, progress_bar=progress_bar, num_steps=map_steps)
    values = map_values(start, derived=True)
    init = init_loc(model, seed, values)
    guide_fn = LaplaceStarted(lambda m: AutoNormal(m, init_loc_fn=init, init_scale=init_scale), split, values,
                              init_scale, laplace)
    result = fit_guide("autonormal", model, guide_fn, split, num_steps=num_steps, lr=lr, num_particles=num_particles,
                       seed=seed, progress_bar=progress_bar, elbo_particles=elbo_particles, start=start,
                       start_values=values, **svi_kwargs)
    result.notes.extend(guide_fn.notes)
    return result
