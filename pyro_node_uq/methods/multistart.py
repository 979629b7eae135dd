"""Several short MAP starts from different random initialisations, the best kept: a warm start that depends less on
one initialisation's luck.  The starts run as one batched model (a plate of starts left of the model's own
plates, so one ODE solve serves all of them, :mod:`~pyro_node_uq.methods.batched_map`) unless the model has
``pyro.param`` s of its own that it cannot take batched (which the starts would share); then one after another."""
import torch
from pyro.infer.autoguide import AutoDelta

from ..validation import check_int
from .batched_map import batchable, fit_batched_map
from .common import fit_guide, init_loc, map_values

__all__ = ["best_start", "start_seeds"]


def start_seeds(seed, num_starts):
    """The initialisation seeds of a method seed's ``num_starts`` starts: ``seed * num_starts + k`` (disjoint
    across method seeds)."""
    return [seed * num_starts + k for k in range(num_starts)]


def best_start(model, split, *, num_starts, num_steps, lr, seed=0, progress_bar=True, distributed=None):
    """Fit ``num_starts`` MAP estimates for ``num_steps`` steps each from the model's initialisations with seeds
    ``seed * num_starts + k`` and keep the one of highest training log joint density.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel`.
    :param split: the training split.
    :param int num_starts: how many starts (>= 1).
    :param int num_steps: steps of each start.
    :param float lr: initial learning rate.
    :param int seed: the method's seed.
    :param bool progress_bar: show a tqdm bar.
    :param bool distributed: as :func:`~pyro_node_uq.infer.fit_svi`'s (default: data-parallel when a process
        group is initialised).
    :returns: ``(values, info)``: the best start's constrained point values ``site -> tensor`` and a dict with
        ``log_joints`` (every start's), ``best``, ``wall_time``, ``num_model_evals`` and ``batched``.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2, num_times=11)
        >>> values, info = best_start(problem.default_model(), problem.train, num_starts=3, num_steps=2, lr=1e-2,
        ...                           progress_bar=False)
        >>> len(info["log_joints"]), info["batched"], sorted(values)[0]
        (3, True, 'R.0.bias')
    """
    num_starts = check_int(num_starts, "num_starts", 1)
    num_steps = check_int(num_steps, "num_steps", 1)
    seeds = start_seeds(seed, num_starts)
    if not batchable(model, split):
        fits = [fit_guide("map start", model, lambda m, s=s: AutoDelta(m, init_loc_fn=init_loc(model, s)), split,
                          num_steps=num_steps, lr=lr, seed=s, progress_bar=progress_bar, stop_rtol=0.0,
                          distributed=distributed)
                for s in seeds]
        joints = torch.tensor([-min(f.losses[-10:]) for f in fits])
        best = int(joints.argmax())
        info = {"log_joints": joints.tolist(), "best": best, "wall_time": sum(f.wall_time for f in fits),
                "num_model_evals": sum(f.num_model_evals for f in fits), "batched": False}
        return map_values(fits[best]), info
    fit = fit_batched_map(model, split, [model.init_loc_fn(s) for s in seeds], num_steps=num_steps, lr=lr, seed=seed,
                          progress_bar=progress_bar, desc="MAP starts", distributed=distributed)
    best = int(fit.log_joints.argmax())
    info = {"log_joints": fit.log_joints.tolist(), "best": best, "wall_time": fit.wall_time,
            "num_model_evals": fit.num_model_evals, "batched": True}
    return fit.values[best], info
