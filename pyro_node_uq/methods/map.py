"""MAP: a point estimate of every latent site (``AutoDelta``) from the model's initialisation; the warm start of
most other methods."""
import contextlib
import warnings

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoDelta, init_to_value

from ..infer._pyro_compat import pyro_name
from ..infer.ltau import LossTrajectoryRecorder, NODETrainingMonitor
from ..infer.polish import polish_lbfgs
from ..utils.seeding import param_scope
from ..validation import check_int
from .common import as_process_model, fit_guide, init_loc, map_values
from .convergence import BudgetExhaustedWarning
from .multistart import best_start
from .registry import register

__all__ = ["default_polish_iters", "polish_note", "polish_values", "polishes", "recording_min_steps",
           "records_errors_by_default", "run_map", "searches_starts", "settle_point"]


def default_polish_iters(num_steps, polish_iters=None):
    """``polish_iters``, or where it is ``None`` a quarter of the SVI budget ``num_steps``: a fit given few steps
    (a quick run, a test) is polished as briefly."""
    return num_steps // 4 if polish_iters is None else check_int(polish_iters, "polish_iters", 0)


def polishes(polish_iters, svi_kwargs):
    """Whether a MAP fit ends with an L-BFGS polish: iterations asked for, and no minibatches (a minibatch fit's
    data may be too large for a full-batch loss).  Under ``torchrun`` every process polishes on the whole split it
    was given, the same computation, so all end with the same values (and a fit on any number of processes
    ends as the one-process fit does)."""
    return bool(polish_iters) and svi_kwargs.get("subsample_size") is None


def polish_note(polish):
    """A result note saying how an L-BFGS polish went."""
    return (f"polished with L-BFGS: {polish.iterations} iterations, loss {polish.losses[0]:.6g} -> "
            f"{polish.losses[-1]:.6g} ({polish.reason})")


def polish_values(model, split, values, state, max_iter):
    """A MAP point polished with :func:`~pyro_node_uq.infer.polish_lbfgs`: ``(values, state, PolishResult)``.

    :param model: the model.
    :param split: the training split.
    :param dict values: the point's constrained latent values.
    :param dict state: a param store state with the model's own ``pyro.param`` s at the point (a learned noise
        scale), or ``None``.
    :param int max_iter: the most L-BFGS iterations.
    :returns: the polished values, the polished model params' state (the guide's own parameters left out) and how
        the polish went.
    """
    with param_scope(state or {"params": {}, "constraints": {}}):
        guide = AutoDelta(model, init_loc_fn=init_to_value(values=values))
        with torch.no_grad():
            guide(*split.args, **split.kwargs)
        polish = polish_lbfgs(model, guide, split, max_iter=max_iter)
        with torch.no_grad():
            values = {name: v.detach().clone() for name, v in guide.median().items()}
        store = pyro.get_param_store()
        prefix = pyro_name(guide) + "."
        for name in [n for n in list(store) if n.startswith(prefix)]:
            del store[name]
        state = store.get_state()
    return values, state, polish


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
          "methods", defaults={"num_steps": 2000, "num_starts": 4, "start_steps": 150},
          quick={"num_steps": 150, "num_starts": 1}, demo=True)
def run_map(model, split, *, warm_start=None, num_steps=2000, lr=2e-2, lr_final=2e-4, seed=0, progress_bar=True,
            num_starts=4, start_steps=150, record_errors=None, record_burn_in=0.25, callback=None, polish_iters=None,
            **svi_kwargs):
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
    :param int polish_iters: the most iterations of an L-BFGS polish after the SVI fit
        (:func:`~pyro_node_uq.infer.polish_lbfgs`; ``0``: none; default :func:`default_polish_iters`: a quarter
        of ``num_steps``).  Adam gets the weights into a basin and then crawls; the polish takes the fit towards the
        basin's mode (500 iterations, about 650 model runs, after 2000 Adam steps).  Skipped for minibatch fits.
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

    polish_iters = default_polish_iters(num_steps, polish_iters)
    polish_after = polishes(polish_iters, svi_kwargs)
    # the SVI fit's warnings are held until the polish has run: an unfinished fit's is dropped if the polish finishes it
    holding = warnings.catch_warnings(record=True) if polish_after else contextlib.nullcontext([])
    with monitor if monitor is not None else contextlib.nullcontext(), holding as held:
        if polish_after:
            warnings.simplefilter("always")
        result = fit_guide("map", model, lambda m: AutoDelta(m, init_loc_fn=init), split, num_steps=num_steps, lr=lr,
                           lr_final=lr_final, seed=seed, progress_bar=progress_bar, start=warm_start,
                           start_values=values, stochastic_dim=lambda g: 0, callback=step_callback, **svi_kwargs)
    result.loss_trajectories = recorder
    if polish_after:
        hidden = list(svi_kwargs.get("fixed_params", ()))  # fitting's fixed params stay fixed
        with param_scope(result.param_state):
            polish = polish_lbfgs(poutine.block(result.model, hide=hidden) if hidden else result.model, result.guide,
                                  split, max_iter=polish_iters, progress_bar=progress_bar, desc="MAP L-BFGS")
            result.param_state = pyro.get_param_store().get_state()
        result.wall_time += polish.wall_time
        result.num_model_evals += polish.evaluations
        result.notes.append(polish_note(polish))
        if polish.converged:  # the polish ended at the basin's mode: the fit has converged
            result.converged, result.stop_reason = True, f"{result.stop_reason}; then {polish_note(polish)}"
        for w in held:
            if not (polish.converged and issubclass(w.category, BudgetExhaustedWarning)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    settle_point(result)
    if starts is not None:
        result.wall_time += starts["wall_time"]
        result.num_model_evals += starts["num_model_evals"]
        joints = ", ".join(f"{v:.4g}" for v in starts["log_joints"])
        result.notes.append(f"started from the best of {num_starts} MAP starts of {start_steps} steps (start "
                            f"{starts['best']}; training log joints {joints})")
    return result
