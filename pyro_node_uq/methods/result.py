"""What every inference method returns: a :class:`MethodResult` that can draw posterior samples and predict."""
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from ..utils.seeding import param_scope
from ..validation import check_int

__all__ = ["MethodResult", "conditioned_trace", "guide_samples", "set_draw_params"]


def guide_samples(guide, num_samples, args=(), kwargs=None, max_plate_nesting=1):
    """Draw ``num_samples`` latent values from ``guide`` in ONE vectorised call.

    :returns: dict site -> tensor ``(num_samples,) + shape``; singleton plate dims of global sites are squeezed,
        auxiliary sites (``AutoContinuous`` ' s flat latent) are dropped.
    """
    with torch.no_grad(), poutine.block():  # noqa: SIM117
        with pyro.plate("_num_predictive_samples", num_samples, dim=-max_plate_nesting - 1):
            trace = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **(kwargs or {})))
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site["infer"].get("is_auxiliary"):
            continue
        value = site["value"]
        event_dim = len(site["fn"].event_shape)
        batch = value.shape[: value.dim() - event_dim]
        keep = (num_samples,) + tuple(s for s in batch[1:] if s != 1)
        out[name] = value.reshape(keep + value.shape[value.dim() - event_dim:])
    return out


def set_draw_params(params):
    """Write per-draw values of ``pyro.param`` s ``name -> (S,) + shape`` (constrained) into the current param
    store, batched as ``(S, 1) + shape`` (the layout a model's ``batchable_params`` take): each of the ``S`` draws
    of a vectorised trace then runs with its own value.  Use it inside :func:`~pyro_node_uq.utils.param_scope`."""
    store = pyro.get_param_store()
    for name, value in params.items():
        store[name] = value.reshape(value.shape[:1] + (1,) + value.shape[1:])


def conditioned_trace(model, samples, num_samples, args=(), kwargs=None):
    """One trace of ``model`` with the latent values ``samples`` fixed, vectorised over their ``num_samples`` draws
    in a plate left of the model's own ``max_plate_nesting`` plates: Pyro's ``Predictive(parallel=True)`` without
    its first traces of the model with prior draws, whose solves may diverge (and warn) however good the posterior.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` (its ``max_plate_nesting`` places the draws' plate).
    :param dict samples: site -> ``(num_samples,) + shape`` (plate dims of global sites may be squeezed, as
        :func:`guide_samples` returns them).
    :param int num_samples: the draws' count.
    :returns: the trace (values as the model made them: a site that does not depend on the draws has no draws'
        dim).

    Example::

        >>> import pyro.distributions as dist
        >>> from pyro_node_uq.models.protocol import PlainModel
        >>> def line(x, y=None):
        ...     a = pyro.sample("a", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(x)):
        ...         return pyro.sample("y", dist.Normal(a * x, 0.1), obs=y)
        >>> tr = conditioned_trace(PlainModel(line, max_plate_nesting=1), {"a": torch.tensor([1.0, -1.0])}, 2,
        ...                        (torch.tensor([1.0, 2.0, 3.0]),))
        >>> tr.nodes["y"]["fn"].mean
        tensor([[ 1.,  2.,  3.],
                [-1., -2., -3.]])
    """
    nesting = model.max_plate_nesting
    data = {k: v.reshape((num_samples,) + (1,) * (nesting - v.dim() + 1) + v.shape[1:]) for k, v in samples.items()}
    with torch.no_grad(), poutine.block(), pyro.plate("_num_predictive_samples", num_samples, dim=-nesting - 1):
        return prune_subsample_sites(poutine.trace(poutine.condition(model, data)).get_trace(*args, **(kwargs or {})))


@dataclass
class MethodResult:
    """The outcome of one inference method, in a form shared by all methods.

    :ivar str name: method name (``"map"``, ``"autonormal"``, ``"nuts"``...).
    :ivar model: the Pyro model that was fitted (called as ``model(t, x, y, mask=...)``).
    :ivar guide: the fitted guide, or ``None`` (MCMC, particles).
    :ivar mcmc: the ``pyro.infer.MCMC`` object, or ``None``.
    :ivar dict samples: site -> tensor ``(chains, draws) + shape`` for MCMC / particle methods, else ``None``.
    :ivar list losses: loss history (negative ELBO per step for SVI; empty for MCMC).
    :ivar float elbo: final ELBO estimate where defined, else ``None``.
    :ivar float wall_time: fitting time in seconds.
    :ivar int num_model_evals: data-model evaluations during fitting (ODE solves x particles), counted.
    :ivar int stochastic_dim: number of scalar latent dimensions the method treats as random.
    :ivar dict param_state: the Pyro param store state at the end of the fit (restored while predicting).
    :ivar dict sample_stats: per-draw sampler statistics ``name -> (chains, draws)`` (MCMC), or ``None``.
    :ivar error_predictor: an error predictor riding on this fit (:class:`~pyro_node_uq.infer.LTAU`), or
        ``None``; the comparison scores its predicted errors instead of the predictive spread.
    :ivar loss_trajectories: per-sample training errors recorded during the fit
        (:class:`~pyro_node_uq.infer.ltau.LossTrajectoryRecorder`), or ``None``.
    :ivar list notes: lines for the comparison report (how the method was started, what it adapted).
    :ivar bool converged: an optimisation-based fit's stopping rule fired before its step budget ran out
        (``False``: the budget ran out first; ``None``: no stopping rule, or not an optimisation; see
        :class:`~pyro_node_uq.methods.convergence.StoppingRule`).
    :ivar str stop_reason: how the fit ended, in words (``None`` for methods without a stopping rule).
    :ivar int steps_used: optimisation steps run (``None`` where not applicable).
    :ivar float loss_slope: least-squares slope of the training loss over the last stopping window, per step.
    :ivar dict draw_params: per-draw values of the model's ``pyro.param`` s where they differ between draws (a deep
        ensemble whose members each learned their own noise scale): name -> ``(chains, draws) + shape``
        (constrained), aligned with :attr:`samples`; :meth:`predict` runs each draw with its own (the model takes
        them batched, its ``batchable_params``) and returns them per draw, or ``None``.
    :ivar train_split: the :class:`~pyro_node_uq.data.Split` the method was fitted on.  Guides whose draws depend
        on the data (:class:`~pyro_node_uq.infer.AutoLangevin` with an exact or hybrid score) are run on it, so
        predictions on another split never condition on that split's observations.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.methods import run_map
        >>> problem = load_problem("chemical", num_train=4, num_test=3)
        >>> res = run_map(problem.default_model(), problem.train, num_steps=5, progress_bar=False)
        >>> res.predict(problem.test, num_samples=2)["obs"].shape
        torch.Size([2, 3, 41, 2])
    """

    name: str
    model: object
    guide: object = None
    mcmc: object = None
    samples: dict = None
    losses: list = field(default_factory=list)
    elbo: float = None
    wall_time: float = 0.0
    num_model_evals: int = 0
    stochastic_dim: int = 0
    param_state: dict = None
    sample_stats: dict = None
    train_split: object = None
    error_predictor: object = None
    loss_trajectories: object = None
    notes: list = field(default_factory=list)
    converged: bool = None
    stop_reason: str = None
    steps_used: int = None
    loss_slope: float = None
    draw_params: dict = None

    @property
    def num_draws(self):
        """Total number of stored draws (chains x draws), or ``None`` for guide methods."""
        if self.samples is None:
            return None
        v = next(iter(self.samples.values()))
        return v.shape[0] * v.shape[1]

    def posterior_samples(self, num_samples=None, seed=0, split=None):
        """Posterior draws of every latent site.

        :param int num_samples: how many draws ``S``; for stored samples ``None`` returns all of them (chains
            concatenated), fewer are a random subset, more repeat every stored draw ``S // n`` times (in order)
            followed by a random subset of ``S mod n`` (so a deep ensemble's members are weighted equally, not by
            the luck of a draw with replacement).
        :param int seed: seed of the guide draw / the subset.
        :param split: the data a data-dependent guide is run on (default: :attr:`train_split`, the data it was
            fitted on; model-free autoguides ignore it).
        :returns: dict site -> tensor ``(S,) + shape``.
        """
        if num_samples is not None:
            num_samples = check_int(num_samples, "num_samples", minimum=1)
        if self.samples is not None:
            return self._stored(self.samples, num_samples, seed)
        if self.guide is None:
            raise ValueError(f"MethodResult {self.name!r} has neither a guide nor stored samples")
        if num_samples is None:
            raise ValueError("num_samples: a guide needs the number of draws")
        split = self.train_split if split is None else split
        args, kwargs = self.model.fit_args(split) if split is not None else ((), {})
        pyro.set_rng_seed(seed)
        with param_scope(self.param_state):
            return guide_samples(self.guide, num_samples, args, kwargs, self.model.max_plate_nesting)

    def _stored(self, values, num_samples, seed):
        """``values`` ``(chains, draws) + shape`` flattened over chains and drawn as :meth:`posterior_samples` draws
        the stored samples (the same draws for the same ``num_samples`` and ``seed``)."""
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in values.items()}
        total = self.num_draws
        if num_samples is None or num_samples == total:
            return flat
        gen = torch.Generator().manual_seed(seed)
        whole, rest = divmod(num_samples, total)  # every stored draw ``whole`` times, then a random subset
        idx = torch.randperm(total, generator=gen)[:rest].sort().values
        idx = torch.cat([torch.arange(total).repeat(whole), idx])
        return {k: v[idx] for k, v in flat.items()}

    def in_fit_dtype(self, split):
        """``split`` cast to the floating dtype the method was fitted in (NumPy data arrive as float64, a guide
        fitted under the default float32 solves in float32); ``split`` itself when it already matches.

        Example::

            >>> import torch
            >>> from pyro_node_uq.data import Split
            >>> fitted_on = Split(torch.arange(2.0).float(), None, torch.zeros(1, 2, 1).float())
            >>> res = MethodResult("toy", model=None, train_split=fitted_on)
            >>> res.in_fit_dtype(Split(torch.arange(2.0).double(), None, torch.zeros(1, 2, 1).double())).y.dtype
            torch.float32
        """
        dtype = self._fit_dtype()
        t = getattr(split, "t", None)
        if dtype is None or not torch.is_tensor(t) or not t.is_floating_point() or t.dtype == dtype:
            return split
        return split.to(dtype=dtype)

    def _fit_dtype(self):
        if self.train_split is not None and torch.is_tensor(getattr(self.train_split, "t", None)):
            return self.train_split.t.dtype
        for value in (self.samples or {}).values():
            if value.is_floating_point():
                return value.dtype
        return None

    def predict(self, split, num_samples=100, seed=0, sites=None):
        """Posterior predictive on ``split`` from ONE vectorised trace of the model (:func:`conditioned_trace`).

        :param split: a :class:`~pyro_node_uq.data.Split` (the model's ``predict_args`` choose what is used; the
            observations are not: the posterior is drawn given :attr:`train_split`); cast to the fit's dtype
            (:meth:`in_fit_dtype`).
        :param int num_samples: number of posterior draws ``S`` (``None``: all stored draws).
        :param int seed: seed of the posterior draw and the observation noise.
        :param sites: sites to return (default: the model's ``predict_sites``); sites the model does not have
            are left out.
        :returns: dict site -> ``(S,) + shape``, each site keeping the trailing dims the model's
            ``predict_sites`` give it (NODE: ``"obs"``, ``"y_mean"`` ``(S, N, T, obs_dim)``, ``"hidden"``
            ``(S, N, T, H)``, a latent ``"sigma"`` ``(S, obs_dim)``); other sites flattened per draw; and the
            :attr:`draw_params` of these draws ``(S,) + shape``.
        """
        split = self.in_fit_dtype(split)
        keep = self.model.predict_sites
        sites = list(keep) if sites is None else list(sites)
        on_inputs = split if self.model.latent_on_inputs else None  # latents of the split's own inputs
        samples = self.posterior_samples(num_samples, seed=seed, split=on_inputs)
        S = next(iter(samples.values())).shape[0] if samples else num_samples
        args, kwargs = self.model.predict_args(split)
        params = {} if self.draw_params is None else self._stored(self.draw_params, num_samples, seed)
        pyro.set_rng_seed(seed)
        with param_scope(self.param_state):
            set_draw_params(params)
            trace = conditioned_trace(self.model, samples, S, args, kwargs)
        out = {k: trace.nodes[k]["value"] for k in sites if k in trace.nodes}
        out = {k: v.expand((S,) + v.shape) if v.dim() == keep.get(k) else v for k, v in out.items()}  # no latents
        out = {k: v.reshape((S,) + (v.shape[v.dim() - keep[k]:] if keep.get(k) else (-1,))) for k, v in out.items()}
        return {**out, **params}
