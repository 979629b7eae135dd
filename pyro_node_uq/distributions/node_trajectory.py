"""The NODE trajectory likelihood: solve dh/dt = R(h, x(t)) for every particle and trajectory in ONE
``torchdiffeq`` call, then apply the observation model y = Z(h, x) + noise."""
import warnings

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from .fixed_grid import solve_node_fixed
from .interpolation import Interpolator
from .solve import NODEDivergenceError, ODESolver, current_divergence_policy

__all__ = ["NODETrajectory"]


class NODETrajectory(TorchDistribution):
    """Distribution of whole observed trajectories of a neural ODE with batched (particle) weights.

    Batch shape is the broadcast of the weights' batch dims (particles, chains, predictive samples) with the
    trajectory dims of ``x`` / ``h0``; the event shape is ``(T, obs_dim)``.  The hidden states are solved once
    per instance (lazily) and shared by :meth:`log_prob`, :meth:`sample` and :meth:`rsample`.

    :param BatchedMLP R: vector field network, input ``hidden_dim + input_dim``, output ``hidden_dim``.
    :param BatchedMLP Z: observation network, input ``hidden_dim + input_dim``, output ``obs_dim``; ``None``
        observes the first ``obs_dim`` hidden components directly.
    :param dict params: site name -> weight tensor with leading batch dims.
    :param torch.Tensor t: strictly increasing observation times ``(T,)``.
    :param torch.Tensor x: inputs ``traj_batch + (Tx, input_dim)`` at ``x_times``, or ``None``.
    :param torch.Tensor h0: initial hidden state, broadcastable to ``batch + (hidden_dim,)``.
    :param scale: observation noise scale (positive), broadcastable to ``batch + (T, obs_dim)``.
    :param str noise: ``"normal"`` or ``"studentt"``.
    :param float df: degrees of freedom of the Student-t noise.
    :param int obs_dim: number of observed components when ``Z`` is ``None``.
    :param torch.Tensor mask: optional boolean of observed entries, broadcastable to ``batch + (T, obs_dim)``.
    :param torch.Tensor x_times: sample times of ``x`` (default ``t``).
    :param str interpolation: ``"linear"`` or ``"cubic"`` interpolation of ``x`` inside the solver.
    :param solver: an :class:`ODESolver` or dict of its options.
    :param str on_divergence: ``"raise"`` a :class:`NODEDivergenceError`, or ``"reject"``: log-density
        ``-inf`` for the diverged batch members (what MCMC wants) with a warning.

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

    arg_constraints = {"scale": constraints.positive}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, R, Z, params, t, x=None, h0=None, scale=1.0, noise="normal", df=4.0, mask=None,
                 x_times=None, interpolation="linear", solver=None, on_divergence="raise", obs_dim=None,
                 validate_args=None):
        if noise not in ("normal", "studentt"):
            raise ValueError(f"noise must be 'normal' or 'studentt', got {noise!r}")
        if on_divergence not in ("raise", "reject"):
            raise ValueError(f"on_divergence must be 'raise' or 'reject', got {on_divergence!r}")
        self.R, self.Z, self.params, self.t = R, Z, params, t
        self.hidden_dim = R.sizes[-1]
        self.input_dim = R.sizes[0] - self.hidden_dim
        self.obs_dim = Z.sizes[-1] if Z is not None else obs_dim
        if self.obs_dim is None or not 0 < self.obs_dim <= self.hidden_dim:
            raise ValueError(f"NODETrajectory: with Z=None, obs_dim must be in [1, hidden_dim={self.hidden_dim}], "
                             f"got {obs_dim}")
        self.x, self.x_times = x, (t if x_times is None else x_times)
        self.h0 = t.new_zeros(self.hidden_dim) if h0 is None else h0
        self.scale = torch.as_tensor(scale, dtype=t.dtype, device=t.device)
        self.noise, self.df, self.mask = noise, df, mask
        self.interpolation = interpolation
        self.solver = ODESolver.coerce(solver)
        self.on_divergence = on_divergence
        batch = [self.h0.shape[:-1]]
        if x is not None:
            batch.append(x.shape[:-2])
        for net in (R, Z):
            for site, shape in (net.param_shapes().items() if net is not None else ()):
                if site not in params:
                    raise ValueError(f"NODETrajectory: missing parameter {site!r}")
                value = params[site]
                if value.shape[value.dim() - len(shape):] != shape:
                    raise ValueError(f"NODETrajectory: parameter {site!r} must end in shape {tuple(shape)}, "
                                     f"got {tuple(value.shape)}")
                batch.append(value.shape[: value.dim() - len(shape)])
        if self.scale.dim() > 2:
            batch.append(self.scale.shape[:-2])
        batch_shape = torch.broadcast_shapes(*batch)
        event_shape = torch.Size((t.shape[0], self.obs_dim))
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    # ---------------------------------------------------------------- the solve
    def _rhs(self, interp):
        R, params = self.R, self.params
        batch = self.batch_shape

        def f(t, h):
            if interp is None:
                return R(params, h)
            xt = interp(t)
            return R(params, torch.cat([h, xt.expand(batch + xt.shape[-1:])], dim=-1))

        return f

    @lazy_property
    def _solution(self):
        """Hidden states ``batch + (T, H)``, observation means ``batch + (T, obs_dim)``, diverged mask."""
        batch = self.batch_shape
        interp = None
        if self.x is not None and self.input_dim > 0:
            interp = Interpolator(self.x_times, self.x, self.interpolation)
        h0 = self.h0.expand(batch + (self.hidden_dim,))
        if self.solver.fixed_grid:
            hs = solve_node_fixed(self.R, self.params, self.h0, self.t, batch, interp, self.solver.method,
                                  self.solver.substeps, self.solver.compile, step_check=self.solver.step_check)
        else:
            hs = self.solver.odeint(self._rhs(interp), h0, self.t, params=tuple(self.params.values()))
        bad = ~torch.isfinite(hs).all(-1).all(0) | (hs.detach().abs().amax((0, -1)) > self.solver.max_abs)
        if bad.any():
            n_bad, n = int(bad.sum()), bad.numel()
            msg = (f"NODE solve diverged for {n_bad} of {n} ensemble members x trajectories "
                   f"(non-finite or |h| > {self.solver.max_abs:g}); method={self.solver.method!r}")
            if current_divergence_policy(self.on_divergence) == "raise":
                raise NODEDivergenceError(msg + ". Use smaller prior scales, a stiffer-safe solver, or "
                                          "on_divergence='reject' to score them as -inf.")
            warnings.warn(msg + "; scored as -inf", RuntimeWarning)
        hs = hs.masked_fill(bad[..., None], 0.0)  # unconditionally: a traced (jit) potential keeps the rejection
        # time stays the leading dim here so that weight batch dims right-align with the ensemble batch
        if self.Z is None:
            mean = hs[..., : self.obs_dim]
        elif interp is None:
            mean = self.Z(self.params, hs)
        else:
            xs = interp.at_grid(self.t).movedim(-2, 0)  # (T,) + traj_batch + (D,)
            xs = xs.reshape(xs.shape[:1] + (1,) * (len(batch) + 2 - xs.dim()) + xs.shape[1:])
            mean = self.Z(self.params, torch.cat([hs, xs.expand(hs.shape[:-1] + xs.shape[-1:])], dim=-1))
        return hs.movedim(0, -2), mean.movedim(0, -2), bad

    @property
    def hidden(self):
        """Solved hidden states, shape ``batch + (T, hidden_dim)``."""
        return self._solution[0]

    @property
    def mean(self):
        """Noise-free observation means, shape ``batch + (T, obs_dim)``."""
        return self._solution[1].expand(self.batch_shape + self.event_shape)

    @property
    def diverged(self):
        """Boolean ``batch`` mask of ensemble members whose solve diverged (only with ``on_divergence='reject'``)."""
        return self._solution[2]

    # ---------------------------------------------------------------- the noise model
    def _noise_dist(self):
        loc = self.mean
        if self.noise == "normal":
            return dist.Normal(loc, self.scale)
        return dist.StudentT(self.df, loc, self.scale)

    @property
    def variance(self):
        return self._noise_dist().variance.expand(self.batch_shape + self.event_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self._noise_dist().rsample(sample_shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        lp = self._noise_dist().log_prob(value)
        if self.mask is not None:
            lp = torch.where(self.mask, lp, torch.zeros_like(lp))
        lp = lp.sum((-1, -2))
        return lp.masked_fill(self.diverged, -float("inf"))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NODETrajectory, _instance)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_solution"})
        if "_solution" in self.__dict__:
            hs, mean, bad = self._solution
            batch_shape = torch.Size(batch_shape)
            new.__dict__["_solution"] = (hs.expand(batch_shape + hs.shape[-2:]),
                                         mean.expand(batch_shape + mean.shape[-2:]), bad.expand(batch_shape))
        super(NODETrajectory, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        new._expanded_from = self.batch_shape
        return new
