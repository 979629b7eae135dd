"""Several independent MAP fits run as ONE batched model: a plate of fits left of the model's own plates, so one
ODE solve serves all of them (MAP starts, deep-ensemble members).

Each fit is trained as it would be alone: Pyro's ``ClippedAdam`` clips every gradient element by itself and Adam's
moments and learning-rate decay are elementwise, so the fits' parameters (disjoint slices of the batched guide's
tensors) do not interact; each fit's loss is its own slice of the batched log joint, and each fit has its own
:class:`~pyro_node_uq.methods.convergence.StoppingRule`.  A fit whose rule fires keeps its values from that step
(the batch runs on until every fit has stopped, or the budget ends; the later steps of a stopped fit are
discarded).  What the fits share: a step with a non-finite gradient is skipped for all of them
(:class:`~pyro_node_uq.infer.GuardedSVI`), and an adaptive ODE solver picks one step size for the batch.  A site
that the ``init_loc_fn`` starts at random draws (``init_to_median`` of per-unit effects) starts at other draws
in a batch than alone; a NODE's weights start at their seed's Glorot values either way.  Over long fits the
batched and the lone fits drift apart by rounding (their sums run in another order), as a fit on another machine
would.

A model's own ``pyro.param`` s (a learned noise scale) would be shared by the fits; they are batched only where the
model accepts a batch of them, one per fit, shaped ``(num_fits,) + (1,) * max_plate_nesting + shape`` (the names in
its ``batchable_params``; every fit's starts at the model's own initial value, as a fit alone does).  Otherwise
:func:`batchable` is false and the callers fit one after another instead."""
import time

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoDelta

from ..infer.svi import fit_svi
from ..utils.seeding import param_scope
from .common import counted, model_params, model_trace
from .convergence import StoppingRule

__all__ = ["BatchedFit", "batchable", "fit_batched_map", "has_own_params", "latent_shapes", "model_params",
           "stacked_init"]

_EMPTY = {"params": {}, "constraints": {}}


def latent_shapes(model, split):
    """``site -> shape`` of the model's latent (non-deterministic) sample sites in one plain run on ``split``."""
    return {n: s["value"].shape for n, s in model_trace(model, split).nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not s["infer"].get("_deterministic")}


def has_own_params(model, split):
    """Whether ``model`` calls ``pyro.param`` itself on ``split``."""
    return bool(model_params(model, split))


def batchable(model, split):
    """Whether MAP fits of ``model`` can run as one batched model: it has no ``pyro.param`` of its own, or only
    ones it accepts batched (its ``batchable_params``)."""
    return set(model_params(model, split)) <= set(getattr(model, "batchable_params", ()))


def stacked_init(inits):
    """An ``init_loc_fn`` of the batched model whose fit ``k`` takes its initial values from ``inits[k]`` (one
    ``init_loc_fn`` of the unbatched model per fit)."""
    def init(site):
        shape = site["fn"].batch_shape + site["fn"].event_shape  # (num_fits, ...)
        values = [fn(site) for fn in inits]  # a batched draw, or one unbatched value (a warm start's)
        return torch.stack([v[k] if v.shape == shape else v.expand(shape[1:]) for k, v in enumerate(values)])
    return init


def per_fit(trace, num_fits):
    """Each fit's total of the ``log_prob`` s of ``trace``'s sample sites, ``(num_fits,)`` (a site that does not
    depend on the fits adds to every fit)."""
    total = torch.zeros(num_fits)
    for site in trace.nodes.values():
        if site["type"] == "sample" and "log_prob" in site:
            lp = site["log_prob"]
            total = total + (lp.reshape(num_fits, -1).sum(-1) if lp.dim() and lp.shape[0] == num_fits
                             else lp.sum())
    return total


class _PerFitELBO(Trace_ELBO):
    """``Trace_ELBO`` (one particle) that also keeps each fit's own loss of the last step, :attr:`last`."""

    def __init__(self, num_fits, **kwargs):
        super().__init__(**kwargs)
        self.num_fits, self.last = num_fits, None

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        with torch.no_grad():
            self.last = per_fit(guide_trace, self.num_fits) - per_fit(model_trace, self.num_fits)
        return super()._differentiable_loss_particle(model_trace, guide_trace)


class BatchedFit:
    """What :func:`fit_batched_map` returns.

    :ivar list values: every fit's constrained point values ``site -> tensor`` (the model's own shapes), taken at
        the step its stopping rule fired, else at the end.
    :ivar list losses: every fit's own loss per step, up to its stop.
    :ivar list endings: every fit's :class:`~pyro_node_uq.methods.convergence.Convergence`.
    :ivar torch.Tensor log_joints: every fit's training log joint density at its values.
    :ivar float wall_time: seconds of the batched fit.
    :ivar int num_model_evals: model evaluations (one per fit and batched step).
    :ivar list params: every fit's own values of the model's ``pyro.param`` s (constrained, the model's shapes).
    :ivar dict constraints: those params' constraints by name.
    """

    def __init__(self, values, losses, endings, log_joints, wall_time, num_model_evals, params, constraints):
        self.values, self.losses, self.endings, self.log_joints = values, losses, endings, log_joints
        self.wall_time, self.num_model_evals, self.params, self.constraints = wall_time, num_model_evals, params, constraints

    def param_state(self, k):
        """A param store state holding fit ``k``'s model params (what a fit alone would leave of them)."""
        with param_scope(_EMPTY):
            for name, value in self.params[k].items():
                pyro.param(name, value.clone(), constraint=self.constraints[name])
            return pyro.get_param_store().get_state()


def fit_batched_map(model, split, inits, *, num_steps, lr, lr_final=None, stop_rtol=0.0, stop_window=50,
                    stop_min_steps=0, stop_patience=2, clip_norm=10.0, seed=0, progress_bar=True, desc="batched MAP",
                    distributed=None, shapes=None):
    """``len(inits)`` MAP fits (``AutoDelta``) of ``model`` on ``split`` from the initialisations ``inits``, run as
    one batched model; fit ``k`` ends as a fit of ``model`` alone from ``inits[k]`` would (see the module's notes).

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` that is :func:`batchable`.
    :param split: the training split.
    :param list inits: one ``init_loc_fn`` of ``model`` per fit.
    :param int num_steps: the most steps.
    :param float lr: initial learning rate of ``ClippedAdam``.
    :param float lr_final: the learning rate it decays to (default ``lr / 10``, as :func:`~pyro_node_uq.infer.fit_svi`).
    :param float stop_rtol: every fit's :class:`~pyro_node_uq.methods.convergence.StoppingRule` tolerance (``0``:
        every fit runs the whole budget); the batch stops when every fit's rule has fired.
    :param int stop_window: the rules' window.
    :param int stop_min_steps: no fit stops before this many steps.
    :param int stop_patience: consecutive windows at which a rule's criterion must hold.
    :param float clip_norm: ``ClippedAdam``'s elementwise gradient clip.
    :param int seed: Pyro's seed.
    :param bool progress_bar: show a tqdm bar.
    :param str desc: the bar's label.
    :param bool distributed: as :func:`~pyro_node_uq.infer.fit_svi`'s.
    :param dict shapes: :func:`latent_shapes` of ``model`` (computed when ``None``).
    :rtype: BatchedFit

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2, num_times=11)
        >>> model = problem.default_model()
        >>> fit = fit_batched_map(model, problem.train, [model.init_loc_fn(s) for s in (0, 1)], num_steps=3,
        ...                       lr=1e-2, progress_bar=False)
        >>> len(fit.values), fit.values[1]["R.0.bias"].shape, [e.steps for e in fit.endings]
        (2, torch.Size([32]), [3, 3])
    """
    num_fits = len(inits)
    shapes = latent_shapes(model, split) if shapes is None else shapes
    counting = counted(model)
    dim = -model.max_plate_nesting - 1

    def batched(*args, **kwargs):
        with pyro.plate("batched_map_fits", num_fits, dim=dim):
            return counting(*args, **kwargs)

    params = model_params(model, split)
    left = (num_fits,) + (1,) * model.max_plate_nesting
    pyro.clear_param_store()
    for name, (value, constraint) in params.items():  # every fit's own, at the model's initial value
        pyro.param(name, value.expand(left + value.shape).clone(), constraint=constraint)
    pyro.set_rng_seed(seed)
    guide = AutoDelta(batched, init_loc_fn=stacked_init(inits))
    loss = _PerFitELBO(num_fits, max_plate_nesting=model.max_plate_nesting + 1)
    rules = [StoppingRule(num_steps, stop_rtol, stop_window, stop_min_steps, stop_patience) for _ in range(num_fits)]
    values = [None] * num_fits

    def snapshot(k):  # fit k's slice of the batched values and params, as the batched model holds them
        with torch.no_grad():
            values = {name: v[k].detach().clone() for name, v in guide.median().items()}
            return values, {name: pyro.param(name)[k].detach().clone() for name in params}

    def callback(step, value):
        for k, rule in enumerate(rules):
            if values[k] is None and rule(step, loss.last[k]):
                values[k] = snapshot(k)
        return all(v is not None for v in values)

    clock = time.perf_counter()
    fit_svi(batched, guide, split, num_steps=num_steps, lr=lr, lr_final=lr_final, loss=loss, clip_norm=clip_norm,
            progress_bar=progress_bar, desc=f"{desc} x{num_fits}", callback=callback, plate=model.data_plate,
            distributed=distributed)
    ends = [v if v is not None else snapshot(k) for k, v in enumerate(values)]
    stacked = {name: torch.stack([v[name] for v, _ in ends]) for name in ends[0][0]}
    store = pyro.get_param_store()
    args, kwargs = model.fit_args(split)
    with torch.no_grad(), poutine.block():
        for name in params:  # the params each fit ended with
            store[name] = torch.stack([p[name] for _, p in ends])
        trace = poutine.trace(poutine.condition(batched, stacked)).get_trace(*args, **kwargs)
        trace.compute_log_prob()
    wall = time.perf_counter() - clock
    values = [{name: v.reshape(shapes[name]) for name, v in fit.items()} for fit, _ in ends]
    fit_params = [{name: p[name].reshape(params[name][0].shape) for name in params} for _, p in ends]
    return BatchedFit(values, [r.losses for r in rules], [r.summary() for r in rules], per_fit(trace, num_fits),
                      wall, counting.count, fit_params, {name: c for name, (_, c) in params.items()})
