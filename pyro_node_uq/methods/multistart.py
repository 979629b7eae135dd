"""Several short MAP starts from different random initialisations, the best kept: a warm start that depends less on
one initialisation's luck.  The starts run as one batched model (a plate of starts left of the model's own
plates, so one ODE solve serves all of them) when the model has no ``pyro.param`` of its own (which the starts
would share); else one after another."""
import time

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoDelta

from ..infer.svi import fit_svi
from ..validation import check_int
from .common import counted, fit_guide, init_loc, map_values

__all__ = ["best_start"]


def _log_joints(model, guide, args, kwargs, num_starts):
    """Each start's log joint density ``(num_starts,)`` at the guide's point values."""
    with torch.no_grad(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        trace.compute_log_prob()
    total = torch.zeros(num_starts)
    for site in trace.nodes.values():
        if site["type"] == "sample":
            lp = site["log_prob"]
            total = total + lp.reshape(num_starts, -1).sum(-1) if lp.dim() else total + lp
    return total


def _stacked_init(model, seeds):
    """An ``init_loc_fn`` of the batched model: start ``k`` takes its values from ``model.init_loc_fn(seeds[k])``."""
    inits = [model.init_loc_fn(s) for s in seeds]

    def init(site):
        return torch.stack([fn(site)[k] for k, fn in enumerate(inits)])
    return init


def _has_params(model, split):
    args, kwargs = model.fit_args(split)
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    shapes = {n: s["value"].shape for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
              and not s["infer"].get("_deterministic")}
    return any(s["type"] == "param" for s in trace.nodes.values()), shapes


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
    seeds = [seed * num_starts + k for k in range(num_starts)]
    has_params, shapes = _has_params(model, split)
    clock = time.perf_counter()
    if has_params:
        fits = [fit_guide("map start", model, lambda m, s=s: AutoDelta(m, init_loc_fn=init_loc(model, s)), split,
                          num_steps=num_steps, lr=lr, seed=s, progress_bar=progress_bar, stop_rtol=0.0,
                          distributed=distributed)
                for s in seeds]
        joints = torch.tensor([-min(f.losses[-10:]) for f in fits])
        best = int(joints.argmax())
        values = map_values(fits[best])
        info = {"log_joints": joints.tolist(), "best": best, "wall_time": sum(f.wall_time for f in fits),
                    "num_model_evals": sum(f.num_model_evals for f in fits), "batched": False}
        return values, info
    dim = -model.max_plate_nesting - 1
    counting = counted(model)

    def batched(*args, **kwargs):
        with pyro.plate("map_starts", num_starts, dim=dim):
            return counting(*args, **kwargs)

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = AutoDelta(batched, init_loc_fn=_stacked_init(model, seeds))
    loss = Trace_ELBO(max_plate_nesting=model.max_plate_nesting + 1)
    fit_svi(batched, guide, split, num_steps=num_steps, lr=lr, loss=loss, progress_bar=progress_bar,
            desc=f"MAP starts x{num_starts}", plate=model.data_plate, distributed=distributed)
    joints = _log_joints(batched, guide, *model.fit_args(split), num_starts)
    best = int(joints.argmax())
    with torch.no_grad():
        values = {name: v[best].reshape(shapes[name]).detach().clone() for name, v in guide.median().items()}
    info = {"log_joints": joints.tolist(), "best": best, "wall_time": time.perf_counter() - clock,
                "num_model_evals": counting.count, "batched": True}
    return values, info
