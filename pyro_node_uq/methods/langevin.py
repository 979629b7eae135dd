"""The Langevin score hypernetwork as a method: :class:`~pyro_node_uq.infer.AutoLangevin` (learned, exact or
hybrid score) with its reference started at a mean-field VI fit."""
from ..infer._pyro_compat import pyro_name, setup_prototype
from ..infer.autoguide import AutoLangevin
from .common import as_process_model, fit_guide, init_loc, map_values, start_from
from .laplace_start import STEP_WIDTH, loc_in_units
from .registry import GuideRecipe, register

__all__ = ["run_langevin"]


def run_langevin(model, split, *, warm_start=None, score="learned", num_steps=10, num_iters=1000, lr=5e-3,
                 num_particles=8, autonormal_steps=None, map_steps=None, seed=0, progress_bar=True,
                 elbo_particles=64, svi_kwargs=None, **guide_kwargs):
    """AutoLangevin with the given score mode, its reference r started at an AutoNormal fit (``init_from``).

    Starting from mean-field VI means the untrained guide IS that fit (the score net starts at zero), so
    training can only improve the path ELBO from there.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` or a plain Pyro model.
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param MethodResult warm_start: an AutoNormal fit to start from (fitted here with ``autonormal_steps`` after
        ``map_steps`` of MAP when ``None``); its cost is included in the result's.
    :param str score: ``"learned"``, ``"exact"`` or ``"hybrid"`` (see :class:`AutoLangevin`).
    :param int num_steps: chain length K.
    :param int num_iters: SVI iterations.
    :param float lr: initial learning rate (decays tenfold).
    :param int num_particles: vectorised ELBO particles per iteration.
    :param int autonormal_steps: AutoNormal steps when the warm start is fitted here (default:
        :func:`run_autonormal`'s; 0: no warm start, the guide starts at the model's initialisation).
    :param int map_steps: MAP steps of that AutoNormal fit's own warm start.
    :param int seed: seed.
    :param bool progress_bar: show tqdm bars.
    :param int elbo_particles: particles of the final path-ELBO estimate (0 to skip).
    :param dict svi_kwargs: passed to :func:`~pyro_node_uq.infer.fit_svi`.
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
    model = as_process_model(model, split)
    start = start_from("autonormal", warm_start, model, split, seed=seed, progress_bar=progress_bar,
                       num_steps=autonormal_steps, map_steps=map_steps, elbo_particles=0)
    values = map_values(start, derived=True)  # map_values reads the fit's own param state
    init = init_loc(model, seed, values)
    if score == "exact":
        # a full-weight exact drift is far outside ULA's stable range on stiff NODE posteriors (noise std 0.02):
        # start its learned weights small (see AutoLangevin's exact_weight_init)
        guide_kwargs.setdefault("exact_weight_init", 0.01)

    svi_kwargs = dict(svi_kwargs or {})
    lr_scales = dict(svi_kwargs.pop("lr_scales", None) or {})  # the caller's, and the warm start's (set up below)

    def guide_fn(m):
        guide = AutoLangevin(m, score=score, num_steps=num_steps, init_from=None if start is None else start.guide,
                             init_loc_fn=init, **guide_kwargs)
        if start is not None:  # started at a fit: the mean moves in units of each coordinate's reference std
            args, kwargs = model.fit_args(split)
            setup_prototype(guide, *args, **kwargs)
            scales = guide.warm_start_lr_scales()
            del scales[f"{pyro_name(guide)}.loc"]
            loc_in_units(guide, (guide.reference_scale / STEP_WIDTH).clamp(max=1.0))
            lr_scales.update({k: v for k, v in scales.items() if k not in lr_scales})
        return guide

    return fit_guide(f"langevin_{score}", model, guide_fn, split, num_steps=num_iters, lr=lr,
                     num_particles=num_particles, seed=seed, progress_bar=progress_bar, elbo_particles=elbo_particles,
                     start=start, start_values=values, lr_scales=lr_scales, **svi_kwargs)


def _register(score, defaults, quick, scaled, demo=False, guide=None):
    def run(model, split, **options):
        return run_langevin(model, split, score=score, **options)
    run.__doc__ = f"``run_langevin(..., score={score!r})``."
    register(f"langevin_{score}", f"AutoLangevin guide, {score} score (path-KL ELBO), from AutoNormal",
             defaults=defaults, quick=quick, start="autonormal", scaled=scaled, demo=demo, guide=guide,
             wraps=run_langevin, sets=("score",))(run)


# the fit command's guide: a narrow reference (std 3e-3) around its start, a MAP fit by default (``--warm-start map``)
# or the network's initial weights (``none``), where a wide reference makes most members' trajectories so poor that
# the drift learns to concentrate them at a high path KL and the loss stalls.  At a polished MAP fit 0.01 is already
# too wide: the fit keeps the spread and over-covers (benchmarks/langevin_mixture.py, kind langevin_map; measured in
# the AutoLangevin docs, "Starting at a fit")
_register("learned", {"num_iters": 300, "num_particles": 8},
          {"num_iters": 60, "num_particles": 4, "elbo_particles": 16}, ("num_iters",), demo=True,
          guide=GuideRecipe("langevin", AutoLangevin, {"init_scale": 3e-3}))
for _score in ("exact", "hybrid"):  # a model gradient per chain step: shorter chains and fewer iterations
    _register(_score, {"num_iters": 100, "num_steps": 5, "num_particles": 8},
              {"num_iters": 30, "num_steps": 3, "num_particles": 4, "elbo_particles": 16}, ("num_iters",))
del _score
