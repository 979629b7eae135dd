"""Low-rank-plus-diagonal Gaussian VI (Pyro's ``AutoLowRankMultivariateNormal``) warm-started at a MAP fit."""
from pyro.infer.autoguide import AutoLowRankMultivariateNormal

from .common import as_process_model, fit_guide, init_loc, map_values, start_from
from .laplace_start import LaplaceStarted
from .registry import GAUSSIAN_GUIDE_PROBLEMS, GuideRecipe, register

__all__ = ["run_lowrank"]


@register("lowrank", "low-rank + diagonal Gaussian VI, from MAP", start="map", demo=True,
          defaults={"num_steps": 1000, "num_particles": 8}, problems=GAUSSIAN_GUIDE_PROBLEMS,
          quick={"num_steps": 100, "num_particles": 4, "elbo_particles": 16, "init_scale": 0.02},
          guide=GuideRecipe("lowrank", AutoLowRankMultivariateNormal, {"init_scale": 0.05}))
def run_lowrank(model, split, *, warm_start=None, num_steps=1000, lr=1e-2, rank=None, init_scale=5e-3, laplace=True,
                num_particles=8, map_steps=None, seed=0, progress_bar=True, elbo_particles=64, **svi_kwargs):
    """Low-rank-plus-diagonal Gaussian VI started at a MAP fit.

    :param int rank: rank of the covariance factor (default: Pyro's ``sqrt(latent_dim)``).
    :param float init_scale: initial posterior std in the unconstrained space (Pyro's: the diagonal and the factor
        together); small, as :func:`~pyro_node_uq.methods.run_autonormal`'s, since the polished MAP's basin is
        narrow and a wide start widens a learned noise scale to cover the guide's own spread.  Quick runs, whose
        short MAP start is far from its mode, keep 0.02.  With ``laplace`` the widest start.
    :param bool laplace: start each coordinate's std at its Laplace width at the warm start (as
        :func:`~pyro_node_uq.methods.run_autonormal`'s), the means moving in units of their widths.

    Other parameters as :func:`~pyro_node_uq.methods.run_autonormal`.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_lowrank(problem.default_model(), problem.train, num_steps=3, map_steps=3, rank=4,
        ...                   progress_bar=False)
        >>> res.name, res.elbo is not None
        ('lowrank', True)
    """
    model = as_process_model(model, split)
    start = start_from("map", warm_start, model, split, seed=seed, progress_bar=progress_bar, num_steps=map_steps)
    values = map_values(start, derived=True)
    init = init_loc(model, seed, values)

    def make_guide(m):
        return AutoLowRankMultivariateNormal(m, init_loc_fn=init, init_scale=init_scale, rank=rank)

    guide_fn = LaplaceStarted(make_guide, split, values, init_scale, laplace)
    result = fit_guide("lowrank", model, guide_fn, split, num_steps=num_steps, lr=lr, num_particles=num_particles,
                       seed=seed, progress_bar=progress_bar, elbo_particles=elbo_particles, start=start,
                       start_values=values, **svi_kwargs)
    result.notes.extend(guide_fn.notes)
    return result
