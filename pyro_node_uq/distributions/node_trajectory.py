"""The NODE trajectory likelihood as one Pyro distribution: :func:`~pyro_node_uq.distributions.node_solve.
solve_node` (the ensemble's ODE solve, with doses and per-unit times) composed with
:class:`~pyro_node_uq.distributions.observation.NODEObservation` (error model, mask, censoring, ``-inf`` for
diverged members)."""
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from ..utils.tensors import broadcast_shapes, expanded
from ..validation import OnDivergence
from .node_solve import NODESolution, solve_checked
from .node_solve_check import check_solve_args
from .observation import ErrorModel, NODEObservation
from .solve_cache import check_sample_once

__all__ = ["NODETrajectory"]


class NODETrajectory(TorchDistribution):
    """Distribution of whole observed trajectories of a neural ODE with batched (particle) weights.

    Batch shape is the broadcast of the weights' batch dims (particles, chains, predictive samples) with the
    units' dims of ``x`` / ``h0`` / ``t`` / ``doses``; the event shape is ``(T, obs_dim)``.  The solve runs once
    per instance (lazily, :attr:`solution`) and is shared by :meth:`log_prob`, :meth:`sample` and :meth:`rsample`;
    :attr:`observation` is the observation model over its mean.

    :param BatchedMLP R: vector field network, input ``hidden_dim + input_dim``, output ``hidden_dim``.
    :param BatchedMLP Z: observation network, or ``None`` to observe the first ``obs_dim`` hidden components.
    :param dict params: site name -> weight tensor with leading batch dims.
    :param torch.Tensor t: observation times, ``(T,)`` shared or ``(N, T)`` per unit (padded, with ``t_mask``).
    :param torch.Tensor x: inputs ``units + (Tx, input_dim)`` at ``x_times``, or ``None``.
    :param torch.Tensor h0: initial hidden state, broadcastable to ``batch + (hidden_dim,)``.
    :param scale: observation scale (see ``error_model``), broadcastable to ``batch + (T, obs_dim)``.
    :param str noise: ``"normal"`` or ``"studentt"``.
    :param float df: degrees of freedom of the Student-t noise.
    :param int obs_dim: number of observed components when ``Z`` is ``None``.
    :param torch.Tensor mask: optional boolean of observed entries, broadcastable to ``batch + (T, obs_dim)``.
    :param torch.Tensor x_times: sample times of ``x`` (default ``t``).
    :param str interpolation: ``"linear"`` or ``"cubic"`` interpolation of ``x`` inside the solver.
    :param solver: an :class:`ODESolver` or dict of its options.
    :param str on_divergence: ``"raise"`` a :class:`NODEDivergenceError`, or ``"reject"``: log-density
        ``-inf`` for the diverged batch members (what MCMC wants) with a warning.
    :param error_model: ``"additive"``, ``"proportional"``, ``"combined"`` or ``"lognormal"``, or an
        :class:`~pyro_node_uq.distributions.observation.ErrorModel` (which carries ``noise`` and ``df``).
    :param prop_scale: proportional coefficient of the ``"combined"`` error model.
    :param torch.Tensor censored: boolean: entries below a quantification limit (the value is the limit).
    :param torch.Tensor t_mask: boolean ``(N, T)``: real entries of per-unit times (padding is unobserved).
    :param DoseSchedule doses: bolus and infusion events per unit.
    :param float t0: start of the solve (default: the earliest observation or dose time).

    Example::

        >>> from pyro_node_uq.nn import BatchedMLP
        >>> R, Z = BatchedMLP("R", (3, 16, 2)), BatchedMLP("Z", (3, 1))
        >>> params = {**R.init_params(), **Z.init_params()}
        >>> params = {k: v.expand((8, 1) + v.shape) for k, v in params.items()}  # 8 particles
        >>> t, x = torch.linspace(0, 1, 20), torch.randn(5, 20, 1)               # 5 trajectories
        >>> d = NODETrajectory(R, Z, params, t, x, h0=torch.zeros(2), scale=0.1)
        >>> d.batch_shape, d.event_shape
        (torch.Size([8, 5]), torch.Size([20, 1]))
    """

    arg_constraints = {"scale": constraints.positive}  # noqa: RUF012
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, R, Z, params, t, x=None, h0=None, scale=1.0, noise="normal", df=4.0, mask=None,
                 x_times=None, interpolation="linear", solver=None, on_divergence="raise", obs_dim=None,
                 error_model="additive", prop_scale=None, censored=None, t_mask=None, doses=None, t0=None,
                 validate_args=None):
        law = ErrorModel.coerce(error_model, noise, df)
        on_divergence = OnDivergence(on_divergence)
        batch, full_t_mask, self.obs_dim = check_solve_args(R, Z, params, t, x, x_times, h0, t_mask, doses, t0,
                                                            obs_dim)
        self.scale = torch.as_tensor(scale, dtype=t.dtype, device=t.device)
        if t_mask is not None:  # padded per-unit times are never observed
            pad = full_t_mask[..., None]
            mask = pad if mask is None else mask & pad
        self.mask, self.censored, self.law, self.prop_scale = mask, censored, law, prop_scale
        self.error_model, self.noise, self.df = law.kind, law.noise, law.df
        self._solve_args = {"R": R, "Z": Z, "params": params, "t": t, "x": x, "h0": h0, "t_mask": full_t_mask, "x_times": x_times,
                                "doses": doses, "t0": t0, "obs_dim": self.obs_dim, "interpolation": interpolation,
                                "solver": solver, "on_divergence": on_divergence, "batch": batch}
        if self.scale.dim() > 2:
            batch = broadcast_shapes(batch, self.scale.shape[:-2])
        super().__init__(batch, torch.Size((t.shape[-1], self.obs_dim)), validate_args=validate_args)

    @lazy_property
    def solution(self):
        """The :class:`NODESolution` of the ensemble, expanded to this distribution's batch shape."""
        hidden, mean, bad = solve_checked(**self._solve_args)  # checked in __init__
        batch = self.batch_shape
        return NODESolution(expanded(hidden, batch + hidden.shape[-2:]), expanded(mean, batch + self.event_shape),
                            expanded(bad, batch))

    @property
    def observation(self):
        """The :class:`NODEObservation` over the solved mean (error model, mask, censoring, divergence)."""
        return NODEObservation(self.mean, self.scale, self.law, prop_scale=self.prop_scale, mask=self.mask,
                               censored=self.censored, diverged=self.diverged,
                               validate_args=False)  # scale checked here at init, values in log_prob

    hidden = property(lambda self: self.solution.hidden,
                      doc="Solved hidden states, shape ``batch + (T, hidden_dim)``.")
    mean = property(lambda self: self.solution.mean,
                    doc="Noise-free observation means (the NODE output), shape ``batch + (T, obs_dim)``.")
    diverged = property(lambda self: self.solution.diverged,
                        doc="Boolean ``batch`` mask of ensemble members whose solve diverged (only with "
                            "``on_divergence='reject'``).")

    @property
    def variance(self):
        return self.observation.variance

    def rsample(self, sample_shape=torch.Size()):  # noqa: B008
        return self.observation.rsample(sample_shape)

    def log_prob_pointwise(self, value):
        """Log-likelihood per entry, ``batch + (T, obs_dim)`` (see :meth:`NODEObservation.log_prob_pointwise`)."""
        return self.observation.log_prob_pointwise(value)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return self.observation.log_prob(value)

    def _validate_sample(self, value):
        """The shape and support checks, each value tensor checked once per shape (see
        :meth:`~pyro_node_uq.distributions.solve_cache.SolveCache.check_once`)."""
        check_sample_once(self, value, super()._validate_sample)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NODETrajectory, _instance)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "solution"})
        batch_shape = torch.Size(batch_shape)
        if "solution" in self.__dict__:
            hs, mean, bad = self.solution
            new.__dict__["solution"] = NODESolution(hs.expand(batch_shape + hs.shape[-2:]),
                                                    mean.expand(batch_shape + mean.shape[-2:]),
                                                    bad.expand(batch_shape))
        super(NODETrajectory, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        new._expanded_from = self.batch_shape
        return new
