"""Fit :class:`~pyro_node_uq.infer.AutoLangevin` on a problem, started at a mean-field VI fit."""
from .autoguide import AutoLangevin
from .baselines import _fit_guide, _init_loc, map_values, run_autonormal

__all__ = ["run_langevin"]


def run_langevin(model, split, *, score="learned", num_steps=10, num_iters=1000, lr=5e-3, num_particles=8,
                 autonormal_result=None, autonormal_steps=1000, map_steps=1000, seed=0, progress_bar=True, elbo_particles=64,
                 svi_kwargs=None, **guide_kwargs):
    """AutoLangevin with the given score mode, its reference r started at an AutoNormal fit (``init_from``).

    Starting from mean-field VI means the untrained guide IS that fit (the score net starts at zero), so
    training can only improve the path ELBO from there.

    :param model: a Pyro model ``model(t, x, y, mask=...)``.
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param str score: ``"learned"``, ``"exact"`` or ``"hybrid"`` (see :class:`AutoLangevin`).
    :param int num_steps: chain length K.
    :param int num_iters: SVI iterations.
    :param float lr: initial learning rate (decays tenfold).
    :param int num_particles: vectorised ELBO particles per iteration.
    :param MethodResult autonormal_result: an AutoNormal :class:`MethodResult` to start from (fitted if ``None``;
        its cost is added to this result's wall time and evaluation count).
    :param int autonormal_steps: AutoNormal steps when it is fitted here (after ``map_steps`` of MAP).
    :param int elbo_particles: particles of the final path-ELBO estimate (0 to skip).
    :param guide_kwargs: passed to :class:`AutoLangevin` (``reference``, ``step_size``, ``score_net``...);
        ``score="exact"`` defaults to ``exact_weight_init=0.01`` here.
    :rtype: MethodResult

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_langevin(problem.default_model(), problem.train, num_iters=2, autonormal_steps=2,
        ...                    num_steps=3, progress_bar=False, map_steps=2)
        >>> res.name
        'langevin_learned'
    """
    an = autonormal_result
    if an is None:
        an = run_autonormal(model, split, num_steps=autonormal_steps, map_steps=map_steps, seed=seed,
                            progress_bar=progress_bar, elbo_particles=0)
    init = _init_loc(model, seed, map_values(an))  # map_values reads the fit's own param state

    if score == "exact":
        # a full-weight exact drift is far outside ULA's stable range on stiff NODE posteriors (noise std 0.02):
        # start its learned weights small (see AutoLangevin's exact_weight_init)
        guide_kwargs.setdefault("exact_weight_init", 0.01)

    def guide_fn(counted):
        return AutoLangevin(counted, score=score, num_steps=num_steps, init_from=an.guide, init_loc_fn=init,
                            **guide_kwargs)

    res = _fit_guide(f"langevin_{score}", model, guide_fn, split, num_iters, lr, num_particles, seed, progress_bar,
                     elbo_particles, start=an, **(svi_kwargs or {}))
    res.num_model_evals += an.num_model_evals
    res.wall_time += an.wall_time
    return res
