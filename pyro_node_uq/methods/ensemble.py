"""A deep ensemble: MAP fits from independent seeds, member ``i`` stored as chain ``i``."""
import inspect
import warnings

import torch

from ..infer.distributed.chains import map_across_ranks
from ..infer.distributed.process import get_world_size
from ..infer.svi import fit_svi
from ..validation import check_int
from .batched_map import batchable, fit_batched_map, latent_shapes
from .common import as_process_model, fit_guide, init_loc, map_values, own_params
from .convergence import BudgetExhaustedWarning
from .map import (
    default_polish_iters,
    polish_note,
    polish_values,
    polishes,
    recording_min_steps,
    records_errors_by_default,
    run_map,
    searches_starts,
)
from .multistart import start_seeds
from .registry import register
from .result import MethodResult
from .screening import failed_members, member_log_likelihoods

__all__ = ["run_ensemble"]


@register("ensemble", "deep ensemble of 5 MAP fits from independent seeds (member 0 is the MAP row)", start="map",
          demo=True, defaults={"num_members": 5}, quick={"num_steps": 150, "num_starts": 1})
def run_ensemble(model, split, *, warm_start=None, num_members=5, num_steps=None, seed=0, progress_bar=True,
                 batched=True, failed_gap=0.5, **map_options):
    """``num_members`` MAP fits from seeds ``seed, seed + 1, ...``; member ``i`` is chain ``i`` of the samples.

    The members are fitted as ONE batched model (a plate of members left of the model's plates: one ODE solve per
    step for all of them, their start searches batched as members x starts), each trained as
    :func:`~pyro_node_uq.methods.run_map` trains it: the same start search, learning-rate decay and stopping rule,
    applied to each member's own loss; a member whose rule fires keeps its values from that step while the others
    go on, and the batch ends when every member has stopped (see :mod:`~pyro_node_uq.methods.batched_map`).  A
    model with a ``pyro.param`` it cannot take batched (which the members would share), or MAP options the batch does not mirror
    (``callback``, ``checkpoint``, ``subsample_size``, ``lr_scales``...), fits them one after another instead.

    Each member predicts with its own learned noise scale (a ``pyro.param`` the model takes batched, kept per
    member in the result's :attr:`~pyro_node_uq.methods.MethodResult.draw_params`): the ensemble's predictive is
    the equal mixture of its members' own predictives.  Any other ``pyro.param`` is member 0's.

    A member whose training log-likelihood per observation ends more than ``failed_gap`` nats below the best
    member's is a failed fit (a poor basin: :mod:`~pyro_node_uq.methods.screening`) and is left out of the result,
    with a warning and a note; the members' training log-likelihoods are in the notes either way.

    Under ``torchrun`` (an initialised ``torch.distributed`` group) the members are shared out to the processes
    (each process fits its block, batched) and gathered on rank 0 (the other ranks return ``None``).

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` or a plain Pyro model.
    :param split: the training split.
    :param MethodResult warm_start: member 0 (a MAP fit with seed ``seed`` trained like the others); fitted
        here with the others when ``None``.
    :param int num_members: ensemble size (>= 1).
    :param int num_steps: MAP steps of every member (default: :func:`~pyro_node_uq.methods.run_map`'s).
    :param int seed: seed of member 0.
    :param bool progress_bar: show tqdm bars.
    :param bool batched: fit the members as one batched model where possible (``False``: one
        :func:`~pyro_node_uq.methods.run_map` after another).
    :param float failed_gap: the largest training log-likelihood gap per observation to the best member a member
        may have to be kept (``None``: keep every member).
    :param map_options: further :func:`~pyro_node_uq.methods.run_map` options of every member.
    :returns: :class:`MethodResult` with samples ``(num_members, 1, ...)`` (less the failed fits left out); its
        cost is the sum of all the members'.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2)
        >>> res = run_ensemble(problem.default_model(), problem.train, num_members=2, num_steps=2,
        ...                    progress_bar=False)
        >>> res.samples["R.0.bias"].shape
        torch.Size([2, 1, 32])
    """
    num_members = check_int(num_members, "num_members", minimum=1)
    model = as_process_model(model, split)
    options = dict(map_options, progress_bar=progress_bar)
    if num_steps is not None:
        options["num_steps"] = num_steps
    if failed_gap is not None and not failed_gap >= 0:
        raise ValueError(f"failed_gap must be >= 0 nats per observation (or None), got {failed_gap}")
    first = [] if warm_start is None else [warm_start]
    seeds = [seed + i for i in range(len(first), num_members)]
    if batched and set(options) <= _BATCHABLE and batchable(model, split):
        result = _batched_ensemble(model, split, first, seeds, options)
    else:
        result = _sequential_ensemble(model, split, first, seeds, options)
    if result is not None and num_members > 1:  # None: another rank under torchrun (rank 0 holds the result)
        _screen(result, split, [seed + i for i in range(num_members)], failed_gap)
    return result


def _sequential_ensemble(model, split, first, seeds, options):
    """The ensemble with the members of ``seeds`` fitted one after another by :func:`run_map` (shared out to the
    ranks under ``torchrun``; ``None`` on the ranks other than 0)."""
    members = map_across_ranks(lambda s: run_map(model, split, seed=s, **options), seeds)
    if members is None:  # another rank: rank 0 holds the result
        return None
    members = first + members
    values = [map_values(m) for m in members]
    return _result(model, split, values, sum(m.wall_time for m in members), sum(m.num_model_evals for m in members),
                   members[0].param_state, own=[own_params(model, m.param_state) for m in members])


def _result(model, split, values, wall_time, num_model_evals, param_state, notes=(), own=None):
    """The ensemble's result: member ``i``'s values as chain ``i``; ``own``, the members' own batchable params
    (:func:`~pyro_node_uq.methods.common.own_params`), become its per-draw params, so each member predicts with its
    own noise scale (the param state, member 0's, serves everything else)."""
    if hasattr(model, "warm_start_values"):  # each member's omega at its effects' spread, as run_map's settle_point
        values = [model.warm_start_values(dict(v), split) if "omega" in v else v for v in values]
    samples = {k: torch.stack([v[k] for v in values])[:, None] for k in values[0]}  # (members, 1, ...)
    draw_params = None
    if own and own[0] and all(set(p) == set(own[0]) for p in own):
        draw_params = {k: torch.stack([p[k] for p in own])[:, None] for k in own[0]}
    result = MethodResult(name="ensemble", model=model, samples=samples, wall_time=wall_time,
                          num_model_evals=num_model_evals,
                          stochastic_dim=sum(int(v.numel()) for v in values[0].values()),  # every weight varies
                          param_state=param_state, train_split=split, draw_params=draw_params)
    result.notes.extend(notes)
    return result


def _screen(result, split, seeds, failed_gap):
    """Leave the failed fits out of the ensemble ``result`` (in place), with a warning; note every member's
    training log-likelihood per observation.  ``seeds``: the members' seeds, in order."""
    log_liks, num_obs = member_log_likelihoods(result.model, split, {k: v[:, 0] for k, v in result.samples.items()},
                                               {k: v[:, 0] for k, v in (result.draw_params or {}).items()},
                                               result.param_state)
    result.notes.append("members' training log-likelihood per observation: " + ", ".join(
        f"{s}: {float(v) / num_obs:.3f}" for s, v in zip(seeds, log_liks)))
    failed = failed_members(log_liks, num_obs, failed_gap)
    if not failed:
        return
    keep = [i for i in range(len(log_liks)) if i not in failed]
    message = (f"ensemble: the members with seeds {[seeds[i] for i in failed]} are failed fits (training "
               f"log-likelihood per observation more than failed_gap={failed_gap} below the best member's "
               f"{float(log_liks.max()) / num_obs:.3f}) and are left out; {len(keep)} of {len(log_liks)} remain")
    warnings.warn(message, UserWarning, stacklevel=3)  # at run_ensemble's caller
    result.notes.append(message)
    result.samples = {k: v[keep] for k, v in result.samples.items()}
    if result.draw_params is not None:
        result.draw_params = {k: v[keep] for k, v in result.draw_params.items()}


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


#: the run_map options a batched fit of the members mirrors (any other one: the members are fitted one by one)
_BATCHABLE = {"num_steps", "lr", "lr_final", "num_starts", "start_steps", "record_errors", "record_burn_in",
              "stop_rtol", "stop_window", "stop_min_steps", "stop_patience", "clip_norm", "distributed", "progress_bar",
              "polish_iters"}


def _batched_ensemble(model, split, first, seeds, options):
    """The ensemble with the members of ``seeds`` fitted batched (each rank its block under ``torchrun``)."""
    world = get_world_size()
    blocks = [seeds[len(seeds) * r // world: len(seeds) * (r + 1) // world] for r in range(world)]
    fitted = map_across_ranks(lambda block: _fit_members(model, split, block, options) if block else None, blocks)
    if fitted is None:  # another rank: rank 0 holds the result
        return None
    fitted = [f for f in fitted if f is not None]
    unfinished = [s for f in fitted for s in f["unfinished"][1]]
    if unfinished:
        warnings.warn(f"ensemble: the step budget of {fitted[0]['unfinished'][0]} ran out before the members with "
                      f"seeds {unfinished} converged", BudgetExhaustedWarning, stacklevel=3)
    values = [map_values(m) for m in first] + [v for f in fitted for v in f["values"]]
    wall = sum(m.wall_time for m in first) + sum(f["wall_time"] for f in fitted)
    evals = sum(m.num_model_evals for m in first) + sum(f["num_model_evals"] for f in fitted)
    states = [m.param_state for m in first] + [s for f in fitted for s in f["param_states"]]
    own = [own_params(model, s) for s in states]
    return _result(model, split, values, wall, evals, states[0], [n for f in fitted for n in f["notes"]], own)


def _fit_members(model, split, seeds, options):
    """MAP fits of ``model`` with seeds ``seeds`` as one batched model, each as :func:`run_map` would fit it alone
    with ``options``: the best of its ``num_starts`` starts (a batch of members x starts), then the main fit with
    the stopping rule on each member's own loss."""
    opt = {name: options.get(name, _default(run_map, name)) for name in
           ("num_steps", "lr", "lr_final", "num_starts", "start_steps", "record_errors", "record_burn_in",
            "polish_iters")}
    opt.update({name: options.get(name, _default(fit_guide, name)) for name in
                ("stop_rtol", "stop_window", "stop_min_steps", "stop_patience")})
    num_steps, num_starts = check_int(opt["num_steps"], "num_steps", 1), check_int(opt["num_starts"], "num_starts", 1)
    progress_bar, shapes = options.get("progress_bar", True), latent_shapes(model, split)
    common = {"clip_norm": options.get("clip_norm", _default(fit_svi, "clip_norm")), "distributed": options.get("distributed"),
              "progress_bar": progress_bar, "shapes": shapes}
    wall = evals = 0
    starts = [None] * len(seeds)
    notes = []
    if searches_starts(num_starts, num_steps, opt["start_steps"]):  # run_map's start search, all members at once
        inits = [model.init_loc_fn(k) for s in seeds for k in start_seeds(s, num_starts)]
        search = fit_batched_map(model, split, inits, num_steps=opt["start_steps"], lr=opt["lr"], seed=seeds[0],
                                 desc="MAP starts", **common)
        joints = search.log_joints.reshape(len(seeds), num_starts)
        best = joints.argmax(-1).tolist()
        starts = [search.values[i * num_starts + b] for i, b in enumerate(best)]
        wall, evals = search.wall_time, search.num_model_evals
        notes.append(f"members {seeds[0]}..{seeds[-1]} (seeds) started from the best of {num_starts} MAP starts of "
                     f"{opt['start_steps']} steps, fitted batched (starts {best})")
    min_steps, record = opt["stop_min_steps"], opt["record_errors"]
    if "stop_min_steps" not in options and (record or (record is None and records_errors_by_default(model))):
        # run_map's error recording keeps a fit from stopping before two windows after its burn-in
        min_steps = recording_min_steps(num_steps, opt["record_burn_in"], opt["stop_window"])
    inits = [init_loc(model, s, v) for s, v in zip(seeds, starts)]
    fit = fit_batched_map(model, split, inits, num_steps=num_steps, lr=opt["lr"], lr_final=opt["lr_final"],
                          stop_rtol=opt["stop_rtol"], stop_window=opt["stop_window"], stop_min_steps=min_steps,
                          stop_patience=opt["stop_patience"],
                          seed=seeds[0], desc="ensemble", **common)
    notes.append(f"members {seeds[0]}..{seeds[-1]} (seeds) fitted as one batched model; steps used "
                 f"{[e.steps for e in fit.endings]}")
    unfinished = [s for s, e in zip(seeds, fit.endings) if e.converged is False and e.steps >= num_steps]
    values, states = fit.values, [fit.param_state(k) for k in range(len(seeds))]
    wall, evals = wall + fit.wall_time, evals + fit.num_model_evals
    polish_iters = default_polish_iters(num_steps, opt["polish_iters"])
    if polishes(polish_iters, options):  # one member at a time, as run_map polishes a fit alone
        values, states, runs = zip(*(polish_values(model, split, v, st, polish_iters) for v, st in zip(values, states)))
        wall += sum(r.wall_time for r in runs)
        evals += sum(r.evaluations for r in runs)
        notes.extend(f"member {s}: {polish_note(r)}" for s, r in zip(seeds, runs))
        # a member polished to its mode has converged, whatever its SVI budget left
        unfinished = [s for s, r in zip(seeds, runs) if s in unfinished and not r.converged]
    return {"values": values, "wall_time": wall, "num_model_evals": evals, "notes": notes, "param_states": states,
            "unfinished": (num_steps, unfinished)}
