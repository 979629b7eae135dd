"""What every method runner shares: the model seen through its protocol, warm starts and their cost, and one
guide fit with counted model evaluations."""
import time

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoGuide, init_to_value
from torch.distributions import biject_to

from ..infer._pyro_compat import pyro_name, replace_model
from ..infer.counting import CountingModel
from ..infer.log_joint import model_plate_nesting
from ..infer.svi import fit_svi
from ..models.protocol import PlainModel, ProcessModel
from ..utils.seeding import param_scope
from ..validation import check_int
from .convergence import NOISE_GROWTH, StoppingRule, noise_growth
from .registry import METHODS, MethodSkipped
from .result import MethodResult

__all__ = ["as_process_model", "carry_model_params", "counted", "estimate_elbo", "fit_guide", "init_loc",
           "latent_dim", "map_values", "model_params", "model_trace", "own_params", "start_from", "with_start_cost"]


def as_process_model(model, split=None):
    """``model`` itself when it follows the :class:`~pyro_node_uq.models.ProcessModel` protocol (or wraps a model
    that does, as :class:`~pyro_node_uq.infer.CountingModel`), else a :class:`~pyro_node_uq.models.PlainModel`
    whose plate depth comes from one trace of ``model`` on ``split``.

    :raises MethodSkipped: the model brings its own guide (``own_guide``): its latent sites have no density that
        the generic methods (autoguides, MCMC, particles) could use.
    """
    if isinstance(model, ProcessModel) or isinstance(getattr(model, "model", None), ProcessModel):
        if model.own_guide is not None:
            raise MethodSkipped(f"{type(model).__name__} samples its latent sites from a path law with no density "
                                "at arbitrary values; only its own guide applies (method 'sdebnn')")
        return model
    if split is None:
        raise ValueError(f"model: {model!r} is not a ProcessModel; give the data split so its plates can be read")
    with poutine.block(), torch.no_grad():
        trace = poutine.trace(model).get_trace(*split.args, **split.kwargs)
    return PlainModel(model, model_plate_nesting(trace))


def counted(model):
    """A :class:`~pyro_node_uq.infer.CountingModel` of ``model`` on its observed site and plate depth."""
    return CountingModel(model, site=model.obs_site, max_plate_nesting=model.max_plate_nesting)


def start_from(name, warm_start, model, split, *, seed=0, progress_bar=True, **options):
    """The fit a method starts from: ``warm_start`` when given (a fit the caller shares between methods), else a
    fresh run of registered method ``name`` with ``options`` (an option given as ``None`` keeps that runner's own
    default, so every method's warm start defaults to the same number of steps), or ``None`` (no warm start: the
    model's own initialisation) when ``num_steps`` is 0.  Its cost is added by :func:`with_start_cost`."""
    if warm_start is not None:
        return warm_start
    if options.get("num_steps") == 0:
        return None
    options = {k: v for k, v in options.items() if v is not None}
    return METHODS[name].runner(model, split, seed=seed, progress_bar=progress_bar, **options)


def with_start_cost(result, start):
    """Add the wall time and model evaluations of ``start`` (the fit ``result`` started from) to ``result``: a
    method's reported cost includes the fits it needed."""
    if start is not None:
        result.wall_time += start.wall_time
        result.num_model_evals += start.num_model_evals
    return result


def latent_dim(guide):
    """Number of scalar latent dimensions of a fitted autoguide (its unconstrained latent size)."""
    return sum(int(site["value"].numel()) for _, site in guide.prototype_trace.iter_stochastic_nodes())


def map_values(result, derived=False):
    """Constrained point values ``site -> tensor`` of a fitted guide ``result`` (a MAP fit's estimate, another
    guide's median), read in the fit's own param state: the warm start of the next method.

    :param bool derived: also the values of the fit's deterministic sites at that point (one model run on its
        training split), so that a quantity one model derives and the next one samples starts where the fit left
        it: a non-centred fit's ``eta = loc + omega * eta_z`` starts a centred model's latent ``eta`` (which would
        otherwise start at 0, and the network would first learn to do without the effects), after the model's
        :meth:`~pyro_node_uq.models.ProcessModel.warm_start_values` moved them along its exact symmetries.  For
        initial values (``init_to_value`` ignores names that are not latent sites of its model), not for posterior
        samples.
    :returns: the values, or ``None`` for ``result=None`` (no warm start).
    """
    if result is None:
        return None
    with torch.no_grad(), param_scope(result.param_state):
        values = {k: v.detach().clone() for k, v in result.guide.median().items()}
        if derived and result.train_split is not None:
            if hasattr(result.model, "warm_start_values"):
                values = result.model.warm_start_values(values, result.train_split)
            _set_params(values)  # a learned omega the model moved: in this scope only, for the trace below
            args, kwargs = result.model.fit_args(result.train_split)
            trace = poutine.trace(poutine.condition(result.model, values)).get_trace(*args, **kwargs)
            values.update({name: site["value"].detach().clone() for name, site in trace.nodes.items()
                           if site["type"] == "sample" and site["infer"].get("_deterministic") and name not in values})
        return values


def model_trace(model, split):
    """One run of ``model`` on ``split`` with an empty param store (its own params at their initial values)."""
    args, kwargs = model.fit_args(split)
    with torch.no_grad(), poutine.block(), param_scope({"params": {}, "constraints": {}}):
        return poutine.trace(model).get_trace(*args, **kwargs)


def model_params(model, split):
    """``name -> (initial constrained value, constraint)`` of the ``pyro.param`` s ``model`` calls on ``split``."""
    return {name: (site["value"].detach().clone(), site["kwargs"].get("constraint"))
            for name, site in model_trace(model, split).nodes.items() if site["type"] == "param"}


def carry_model_params(result, values=None):
    """Put the model's own ``pyro.param`` values of a fitted ``result`` (a learned noise scale ``sigma``) into
    the current param store, so a method started from that fit continues from them instead of re-initialising.

    The guide's parameters (named ``<guide prefix>.*``) are left out.  Does nothing for ``None`` or a result
    without a param state.

    :param dict values: the warm start's values (``map_values(result, derived=True)``): a model parameter among
        them replaces the fit's value (a learned omega that
        :meth:`~pyro_node_uq.models.HierarchicalNODEModel.warm_start_values` moved along a symmetry).
    """
    state = None if result is None else result.param_state
    if state is None:
        return
    prefix = pyro_name(result.guide)  # a guide is a PyroModule: its params are "<name>.*"
    for name, unconstrained in state["params"].items():
        if prefix and name.startswith(prefix + "."):
            continue
        constraint = state["constraints"][name]
        with torch.no_grad():
            value = biject_to(constraint)(unconstrained.detach()).clone()
        pyro.param(name, value, constraint=constraint)
    _set_params(values or {})


def _set_params(values):
    """Set the params of the current store that ``values`` names (constrained values) to those values."""
    store = pyro.get_param_store()
    for name in set(values) & set(store.keys()):
        with torch.no_grad():
            store[name] = values[name].detach().clone()


def init_loc(model, seed, values=None):
    """The ``init_loc_fn`` of a method: ``values`` (a warm start) where given, the model's own initialisation
    for the other sites."""
    fallback = model.init_loc_fn(seed)
    return fallback if values is None else init_to_value(values=values, fallback=fallback)


def estimate_elbo(model, guide, split, num_particles=64, seed=0):
    """A vectorised Monte-Carlo ELBO estimate of ``guide`` (``Trace_ELBO``, ``num_particles`` in one solve)."""
    pyro.set_rng_seed(seed)
    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True,
                      max_plate_nesting=model.max_plate_nesting)
    args, kwargs = model.fit_args(split)
    with torch.no_grad():
        return -float(elbo.loss(model, guide, *args, **kwargs))


def fit_guide(name, model, guide_fn, split, *, num_steps, lr, num_particles=1, seed=0, progress_bar=True,
              elbo_particles=0, start=None, start_values=None, stochastic_dim=latent_dim, stop_rtol=1e-3,
              stop_window=50, stop_min_steps=0, stop_patience=2, callback=None, fixed_params=(), **svi_kwargs):
    """Fit ``guide_fn(counted_model)`` with vectorised ELBO particles; return a :class:`MethodResult` whose cost
    includes ``start``'s.

    :param str name: the method name.
    :param model: a :class:`~pyro_node_uq.models.ProcessModel`.
    :param guide_fn: ``guide_fn(model) -> AutoGuide``.
    :param split: the training split.
    :param int num_steps: the most SVI steps (the budget); the fit stops earlier when its loss has converged.
    :param float lr: initial learning rate.
    :param int num_particles: ELBO particles per step, vectorised.
    :param int seed: seed.
    :param bool progress_bar: show a tqdm bar.
    :param int elbo_particles: particles of the final ELBO estimate (0 to skip).
    :param MethodResult start: the fit this one starts from; its model parameters (a learned noise scale) are
        carried over and its cost added.
    :param dict start_values: ``start``'s values as the initial values were built from (see
        :func:`carry_model_params`).
    :param stochastic_dim: ``stochastic_dim(guide) -> int``, the scalar dimensions the guide treats as random.
    :param float stop_rtol: the :class:`~pyro_node_uq.methods.convergence.StoppingRule`'s relative improvement
        per window below which the fit has converged and stops (``0``: run the whole budget).  A fit whose budget
        runs out first gives a :class:`~pyro_node_uq.methods.convergence.BudgetExhaustedWarning`; the result's
        ``converged``, ``stop_reason``, ``steps_used`` and ``loss_slope`` say how it ended.
    :param int stop_window: steps per averaging window of the stopping rule.
    :param int stop_min_steps: no stop before this many steps.
    :param int stop_patience: consecutive windows at which the stopping criterion must hold.
    :param callback: ``callback(step, loss)``, returning ``True`` to stop (see :func:`~pyro_node_uq.infer.fit_svi`).
    :param fixed_params: names of the model's ``pyro.param`` s kept at their start values (``start``'s, else
        their initial values) instead of being fitted with the guide, e.g. ``("sigma",)``: a noise scale learned
        with the ELBO settles at the mean squared residual plus the variance of the predictions under the guide,
        so the predictive counts the guide's spread twice; kept at a MAP start's value it counts it once.
    :param svi_kwargs: passed to :func:`~pyro_node_uq.infer.fit_svi`.
    """
    num_particles = check_int(num_particles, "num_particles", 1)
    elbo_particles = check_int(elbo_particles, "elbo_particles", 0)
    pyro.clear_param_store()
    carry_model_params(start, start_values)
    pyro.set_rng_seed(seed)
    counting = counted(model)
    clock = time.perf_counter()  # the guide's set-up (a Laplace start's Hessian) is part of the fit's cost
    guide = guide_fn(counting)
    loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                      max_plate_nesting=model.max_plate_nesting)
    rule = StoppingRule(num_steps, stop_rtol, stop_window, stop_min_steps, stop_patience)

    def step_callback(step, value):
        stop = rule(step, value)  # every step: the rule keeps the loss history
        return (callback is not None and bool(callback(step, value))) or stop

    fitted = counting
    fixed_params = tuple(fixed_params)
    if fixed_params:  # hidden from SVI's parameter capture, so not optimised; the model still reads them
        unknown = [n for n in fixed_params if n not in model_params(model, split)]
        if unknown:
            raise ValueError(f"fixed_params: {unknown} are not pyro.param s of the model")
        fitted = poutine.block(counting, hide=list(fixed_params))
        svi_kwargs.setdefault("plate", getattr(model, "data_plate", None))
    fit = fit_svi(fitted, guide, split, num_steps=num_steps, lr=lr, loss=loss, progress_bar=progress_bar,
                  desc=name, callback=step_callback, seed=seed, **svi_kwargs)
    wall = time.perf_counter() - clock
    ending = rule.warn_if_unfinished(name)
    if isinstance(guide, AutoGuide):  # a model's own guide does not hold the model
        replace_model(guide, model)  # predictions and ELBO estimates are not fitting cost
    elbo = estimate_elbo(model, guide, split, elbo_particles, seed) if elbo_particles else None
    result = MethodResult(name=name, model=model, guide=guide, losses=fit.losses, elbo=elbo, wall_time=wall,
                          num_model_evals=counting.count, stochastic_dim=stochastic_dim(guide),
                          param_state=pyro.get_param_store().get_state(), train_split=split,
                          converged=ending.converged, stop_reason=ending.reason, steps_used=ending.steps,
                          loss_slope=ending.slope)
    growth = noise_growth(name, model, None if start is None else start.param_state, result.param_state)
    if growth is not None and growth > NOISE_GROWTH:
        result.notes.append(f"learned noise scale {growth:.3g}x its warm start's")
    return with_start_cost(result, start)


def own_params(model, state):
    """The constrained values of the ``pyro.param`` s in the param store state ``state`` that ``model`` takes
    batched (its ``batchable_params``: a learned noise scale): what each member of a deep ensemble keeps of its own
    beyond its latent values.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel`.
    :param dict state: a param store state (``None``: nothing).
    :returns: dict name -> tensor (detached copies).

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> own_params(load_problem("chemical", num_train=2).default_model(), None)
        {}
    """
    names = [n for n in getattr(model, "batchable_params", ()) if state is not None and n in state["params"]]
    with param_scope(state), torch.no_grad():
        return {n: pyro.param(n).detach().clone() for n in names}
