"""MAP: a point estimate of every latent site (``AutoDelta``) from the model's initialisation; the warm start of
most other methods."""
import contextlib

import pyro
import torch
from pyro.infer.autoguide import AutoDelta

from ..infer._pyro_compat import pyro_name
from ..infer.ltau import LossTrajectoryRecorder, NODETrainingMonitor
from ..utils.seeding import param_scope
from ..validation import check_int
from .common import as_process_model, fit_guide, init_loc, map_values
from .multistart import best_start
from .registry import register

__all__ = ["recording_min_steps", "records_errors_by_default", "run_map", "searches_starts", "settle_point"]


def searches_starts(num_starts, num_steps, start_steps):
    """Whether a MAP fit without a warm start searches among ``num_starts`` short starts: several starts, and a
    budget longer than one short start."""
    return num_starts > 1 and num_steps > start_steps


def records_errors_by_default(model):
    """Whether a MAP fit records its training errors unless told: when the model records a ``y_mean`` site."""
    return "y_mean" in getattr(model, "predict_sites", {})


def recording_min_steps(num_steps, record_burn_in, stop_window):
    """The fewest steps of a fit that records its errors: two stopping windows after recording starts."""
    return int(record_burn_in * num_steps) + 2 * stop_window


def settle_point(result):
    """Move a MAP fit's point along its model's exact symmetries of the likelihood
    (:meth:`~pyro_node_uq.models.HierarchicalNODEModel.warm_start_values`), in its own param state.

    For a hierarchical model this sets omega to the spread of the fitted units' effects.  The joint mode of a
    non-centred model has no ``-N log omega`` term: omega drifts along the ridge ``eta_z = eta / omega``, resisted by
    its prior alone, and with sparse units (one or two samples each) it ends several times wider than the effects'
    spread, so that the MAP's predictive for new units, which draws their effects with it, is far too wide.  The
    fitted units' likelihood does not change.  Models without such symmetries are left alone.
    """
    model = result.model
    if result.guide is None or result.train_split is None or not hasattr(model, "warm_start_values"):
        return result
    with torch.no_grad(), param_scope(result.param_state):
        values = {k: v.detach() for k, v in result.guide.median().items()}
        moved = model.warm_start_values(dict(values), result.train_split)
        store = pyro.get_param_store()
        for name, value in moved.items():
            if name in values and value is values[name]:
                continue
            key = f"{pyro_name(result.guide)}.{name}"
            if key in store:
                store[key] = value
            elif name in store:  # a learned (pyro.param) omega
                store[name] = value
        result.param_state = store.get_state()
    return result


@register("map", "MAP point estimate (AutoDelta), best of several short Glorot starts; the warm start of the other "
          "methods", defaults={"num_steps": 5000, "num_starts": 4, "start_steps": 150},
          quick={"num_steps": 150, "num_starts": 1}, demo=True)
def run_map(model, split, *, warm_start=None, num_steps=5000, lr=2e-2, lr_final=2e-4, seed=0, progress_bar=True,
            num_starts=4, start_steps=150, record_errors=None, record_burn_in=0.25, callback=None, **svi_kwargs):
    """MAP estimate of every latent site (``AutoDelta``).

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` (e.g. :class:`~pyro_node_uq.models.NODEModel`) or
        a plain Pyro model ``model(*split.args, **split.kwargs)``.
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param MethodResult warm_start: a fit whose point values start this one (default: the best of
        ``num_starts`` short fits from the model's ``init_loc_fn``).
    :param int num_steps: the most SVI steps; the fit stops earlier when its loss has converged (see
        :func:`~pyro_node_uq.methods.common.fit_guide`'s ``stop_rtol``).
    :param int num_starts: short fits from different random initialisations (seeds ``seed * num_starts + k``),
        run as one batched model where possible; the one of highest training log joint density is continued
        (``1``: one start, the model's initialisation with ``seed``).  Ignored with a ``warm_start`` or when
        ``num_steps`` is no longer than ``start_steps``.
    :param int start_steps: steps of each short fit.
    :param float lr: initial learning rate of ``ClippedAdam``.
    :param float lr_final: the learning rate it decays to geometrically over ``num_steps`` (a hundredfold decay
        lets the NODE's weights settle: a tenfold one leaves the loss falling in steps).
    :param int seed: seed of the initial weights and of Pyro.
    :param bool progress_bar: show a tqdm bar.
    :param bool record_errors: record every training point's error at every step from ``record_burn_in`` of the
        steps on (NODE models; what :mod:`LTAU <pyro_node_uq.methods.ltau>` needs; costs only the bookkeeping:
        the errors are those of the prediction each step computed anyway); default: when the model records a
        ``y_mean`` site.  Recording keeps the fit from stopping before it has recorded two stopping windows.
    :param float record_burn_in: fraction of the steps before recording starts.
    :param callback: optional ``callback(step, loss)`` (see :func:`~pyro_node_uq.infer.fit_svi`).
    :param svi_kwargs: passed to :func:`~pyro_node_uq.methods.common.fit_guide` (``stop_rtol``, ``stop_window``)
        and :func:`~pyro_node_uq.infer.fit_svi`.
    :returns: :class:`MethodResult` with ``elbo=None`` (a point mass has no ELBO), ``stochastic_dim=0``, and
        ``loss_trajectories`` when recorded.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_map(problem.default_model(), problem.train, num_steps=5, num_starts=2, start_steps=2,
        ...               progress_bar=False)
        >>> sorted(res.posterior_samples(1))[:2]
        ['R.0.bias', 'R.0.weight']
    """
    model = as_process_model(model, split)
    values = None if warm_start is None else map_values(warm_start, derived=True)
    starts = None
    num_steps = check_int(num_steps, "num_steps", 1)
    # a search among starts needs a budget longer than one short start
    if warm_start is None and searches_starts(check_int(num_starts, "num_starts", 1), num_steps, start_steps):
        values, starts = best_start(model, split, num_starts=num_starts, num_steps=start_steps, lr=lr, seed=seed,
                                    progress_bar=progress_bar, distributed=svi_kwargs.get("distributed"))
    init = init_loc(model, seed, values)
    recorder = monitor = None
    if record_errors is None:
        record_errors = records_errors_by_default(model)
    if record_errors:
        recorder = LossTrajectoryRecorder()
        monitor = NODETrainingMonitor(recorder, split, start=int(record_burn_in * num_steps))
        svi_kwargs.setdefault("stop_min_steps",
                              recording_min_steps(num_steps, record_burn_in, svi_kwargs.get("stop_window", 50)))

    def step_callback(step, loss):
        stop = monitor(step, loss) if monitor is not None else False
        return bool(stop) or (callback is not None and bool(callback(step, loss)))

    with monitor if monitor is not None else contextlib.nullcontext():
        result = fit_guide("map", model, lambda m: AutoDelta(m, init_loc_fn=init), split, num_steps=num_steps, lr=lr,
                           lr_final=lr_final, seed=seed, progress_bar=progress_bar, start=warm_start,
                           start_values=values, stochastic_dim=lambda g: 0, callback=step_callback, **svi_kwargs)
    result.loss_trajectories = recorder
    settle_point(result)
    if starts is not None:
        result.wall_time += starts["wall_time"]
        result.num_model_evals += starts["num_model_evals"]
        joints = ", ".join(f"{v:.4g}" for v in starts["log_joints"])
        result.notes.append(f"started from the best of {num_starts} MAP starts of {start_steps} steps (start "
                            f"{starts['best']}; training log joints {joints})")
    return result
