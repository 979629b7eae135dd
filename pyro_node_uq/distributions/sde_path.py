"""Weight paths of an SDE-BNN: hidden units and weights integrated together over depth t in [0, 1].

The prior on the weight path is an Ornstein-Uhlenbeck process and the variational posterior adds a learned
drift ``g(t, w)`` with the same diffusion::

    prior      dw = -w dt + sigma dB
    posterior  dw = (-w + g(t, w)) dt + sigma dB
    hidden     dh = f(h; w_t) dt,   f a :class:`~pyro_node_uq.nn.BatchedMLP` whose weights are w_t

Path space has no Lebesgue density, so densities here are Radon-Nikodym derivatives with respect to the
prior path law P.  By Girsanov, with ``u = g / sigma``, along a posterior path::

    log dQ/dP = int_0^1 0.5 ||u(t, w_t)||^2 dt + int_0^1 u(t, w_t) . dB_t       (B the posterior's noise)

whose expectation under Q is the path KL.  The running integral is carried as one extra state component of
the ``torchsde`` solve ("plain": the ``dt`` part only; "stl": plus the zero-mean ``dB`` part with the drift's
parameters detached, the sticking-the-landing estimator).  One solve integrates every particle: the state is
``(particles, weights + points * hidden + 1)``.
"""
import math
from dataclasses import dataclass

import torch
import torchsde
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints

from ..nn import unflatten_params
from .solve import NODEDivergenceError
from .solver_options import SolverOptions

__all__ = ["SDESolver", "WeightPathFeatures", "solve_weight_path"]

_ITO = {"euler", "milstein", "srk"}
_STRATONOVICH = {"midpoint", "heun", "euler_heun", "reversible_heun"}
_ESTIMATORS = ("plain", "stl")


@dataclass
class SDESolver(SolverOptions):
    """Options of the ``torchsde`` solve over depth t in [0, 1].

    The weight noise is additive (``sigma`` does not depend on the state), so Ito and Stratonovich solutions
    coincide and every ``torchsde`` method for diagonal noise is allowed: ``"euler"``, ``"milstein"``,
    ``"srk"`` (Ito) or ``"midpoint"``, ``"heun"``, ``"euler_heun"``, ``"reversible_heun"`` (Stratonovich).
    The STL estimator adds a state-dependent ``dB`` integral, which must be Ito: it needs ``"euler"``.

    :param str method: the ``torchsde`` method.
    :param float dt: the (initial, when adaptive) step in depth.
    :param bool adaptive: adaptive steps (``torchsde``'s step-doubling error control with ``rtol``/``atol``).
    :param float rtol: relative tolerance of adaptive steps.
    :param float atol: absolute tolerance of adaptive steps.
    :param float dt_min: smallest adaptive step.
    :param bool adjoint: use ``torchsde.sdeint_adjoint`` (the stochastic adjoint: memory constant in the
        number of steps, gradients by a backward solve on the same Brownian path).
    :param float max_abs: states larger than this in absolute value count as diverged.
    """

    method: str = "euler"
    dt: float = 0.1
    adaptive: bool = False
    rtol: float = 1e-3
    atol: float = 1e-3
    dt_min: float = 1e-4
    adjoint: bool = False
    max_abs: float = 1e6

    def _check(self):
        if self.method not in _ITO | _STRATONOVICH:
            raise ValueError(f"SDESolver: method must be one of {sorted(_ITO | _STRATONOVICH)}, got {self.method!r}")
        if not (0 < self.dt <= 1):
            raise ValueError(f"SDESolver: dt must be in (0, 1] (depth runs over [0, 1]), got {self.dt}")
        if not (self.rtol > 0 and self.atol > 0 and self.dt_min > 0):
            raise ValueError(f"SDESolver: rtol, atol and dt_min must be positive, got {self.rtol}, {self.atol}, "
                             f"{self.dt_min}")

    @property
    def sde_type(self):
        return "ito" if self.method in _ITO else "stratonovich"


class _AugmentedSDE(torch.nn.Module):
    """State ``[w (D), h (N*H), log-ratio (1)]`` per particle; drift of all three, diffusion on w only."""

    def __init__(self, net, shapes, num_points, sigma, drift, log_ratio, sde_type, noise_type):
        super().__init__()
        self.net, self.shapes, self.num_points = net, shapes, num_points
        self.hidden_dim = net.sizes[-1] if net is not None else 0
        self.sigma, self.drift, self.log_ratio = sigma, drift, log_ratio
        self.sde_type, self.noise_type = sde_type, noise_type
        self.num_weights = sigma.shape[-1]

    def split(self, y):
        D, NH = self.num_weights, self.num_points * self.hidden_dim
        return y[:, :D], y[:, D:D + NH]

    def f(self, t, y):
        w, h = self.split(y)
        P = y.shape[0]
        parts = []
        if self.drift is None:
            parts.append(-w)
        else:
            g = self.drift(t, w)
            parts.append(-w + g)
        if self.num_points:
            params = unflatten_params(w.unsqueeze(-2), self.shapes)  # (P, 1, ...): shared by the N points
            dh = self.net(params, h.reshape(P, self.num_points, self.hidden_dim))
            parts.append(dh.reshape(P, -1))
        if not self.log_ratio:
            parts.append(torch.zeros_like(y[:, -1:]))
        else:
            parts.append(0.5 * (g / self.sigma).pow(2).sum(-1, keepdim=True))
        return torch.cat(parts, dim=-1)


class _DiagonalSDE(_AugmentedSDE):
    def g(self, t, y):
        zeros = torch.zeros_like(y[:, self.num_weights:])
        return torch.cat([self.sigma.expand(y.shape[0], -1), zeros], dim=-1)


class _STLSDE(_AugmentedSDE):
    """General noise: the log-ratio component also receives ``u_sg . dB`` (drift parameters detached)."""

    def g_prod(self, t, y, v):
        w, _ = self.split(y)
        u_sg = self.drift(t, w, detach=True) / self.sigma
        zeros = torch.zeros_like(y[:, self.num_weights:-1])
        return torch.cat([self.sigma * v, zeros, (u_sg * v).sum(-1, keepdim=True)], dim=-1)


def solve_weight_path(w0, sigma, num_particles, net=None, shapes=None, h0=None, drift=None, solver=None,
                      estimator="plain", stochastic=True):
    """Integrate weights, hidden units and the log-density ratio of every particle in one ``torchsde`` solve.

    :param torch.Tensor w0: initial weights ``(D,)`` (shared by the particles).
    :param torch.Tensor sigma: diffusion ``(D,)`` or scalar, positive.
    :param int num_particles: number of independent weight paths P.
    :param BatchedMLP net: hidden vector field ``f(h; w)``; ``None`` integrates the weights alone.
    :param dict shapes: site name -> event shape of ``net``'s parameters, in the order of ``w``.
    :param torch.Tensor h0: initial hidden units ``(N, H)`` of the N data points, or ``None``.
    :param drift: ``drift(t, w, detach=False) -> (P, D)``, the posterior's drift correction g; ``None`` for the
        prior (log-ratio 0).  ``detach=True`` must return the same values with the drift's parameters detached.
    :param solver: :class:`SDESolver` or dict of its options.
    :param str estimator: ``"plain"`` or ``"stl"`` (see the module docstring).
    :param bool stochastic: ``False`` removes the diffusion (an ODE-net with depth-varying weights).
    :returns: ``(h1, w1, log_ratio)`` of shapes ``(P, N, H)`` (or ``None``), ``(P, D)`` and ``(P,)``.
    """
    solver = SDESolver.coerce(solver)
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
    if w0.dim() != 1:
        raise ValueError(f"w0: expected initial weights of shape (D,), got {tuple(w0.shape)}")
    D = w0.shape[0]
    sigma = torch.as_tensor(sigma, dtype=w0.dtype, device=w0.device).expand(D)
    if stochastic and not (sigma > 0).all():
        raise ValueError(f"sigma: the weight diffusion must be positive, got min {float(sigma.min())}")
    if not stochastic:
        sigma = torch.zeros_like(sigma)
    stl = estimator == "stl" and stochastic and drift is not None
    if stl and (solver.method != "euler" or solver.adjoint):
        raise ValueError(f"estimator='stl' needs an Ito solve with method='euler' and adjoint=False, got "
                         f"method={solver.method!r}, adjoint={solver.adjoint}")
    if (net is None) != (h0 is None):
        raise ValueError("net and h0: give both (weights drive hidden units) or neither (weights alone)")
    N = 0 if h0 is None else h0.shape[0]
    if h0 is not None and (h0.dim() != 2 or h0.shape[-1] != net.sizes[-1]):
        raise ValueError(f"h0: expected shape (N, {net.sizes[-1]}), got {tuple(h0.shape)}")
    P = int(num_particles)
    parts = [w0.expand(P, D)]
    if N:
        parts.append(h0.reshape(1, -1).expand(P, -1))
    parts.append(w0.new_zeros(P, 1))
    y0 = torch.cat(parts, dim=-1)

    cls, noise = (_STLSDE, "general") if stl else (_DiagonalSDE, "diagonal")
    sde = cls(net, shapes, N, sigma, drift, stochastic and drift is not None, solver.sde_type, noise)
    ts = torch.tensor([0.0, 1.0], dtype=w0.dtype, device=w0.device)
    levy = "space-time" if solver.method == "srk" else "none"
    bm_size = (P, D) if stl else (P, y0.shape[-1])
    entropy = int(torch.randint(2 ** 31 - 1, ()).item())  # follows torch's (and so pyro.set_rng_seed's) RNG
    bm = torchsde.BrownianInterval(0.0, 1.0, size=bm_size, dtype=w0.dtype, device=w0.device, entropy=entropy,
                                   levy_area_approximation=levy)
    kwargs = {"bm": bm, "method": solver.method, "dt": solver.dt, "adaptive": solver.adaptive, "rtol": solver.rtol,
                  "atol": solver.atol, "dt_min": solver.dt_min}
    if solver.adjoint:
        params = tuple(p for p in getattr(drift, "parameters", lambda: ())() if p.requires_grad)
        y1 = torchsde.sdeint_adjoint(sde, y0, ts, adjoint_params=params, **kwargs)[-1]
    else:
        y1 = torchsde.sdeint(sde, y0, ts, **kwargs)[-1]
    bad = ~torch.isfinite(y1).all(-1) | (y1.abs() > solver.max_abs).any(-1)
    if bad.any():
        raise NODEDivergenceError(f"SDE-BNN solve ({solver.method}, dt={solver.dt}) diverged for {int(bad.sum())} "
                                  f"of {P} weight paths (non-finite or |state| > {solver.max_abs}); lower lr or dt")
    w1, h1 = sde.split(y1)
    h1 = h1.reshape(P, N, -1) if N else None
    return h1, w1, y1[:, -1]


class WeightPathFeatures(TorchDistribution):
    """Law of the terminal hidden units ``h_1`` of N data points driven by one random weight path.

    Batch shape: independent weight paths (particles, predictive samples); event shape ``(N, H)`` (the points
    share the path, so they are one event).  ``log_prob`` is the density with respect to the **prior** path law:
    0 for the prior (``drift=None``) and the Girsanov log-ratio estimate for the posterior.  The posterior's
    log-ratio is only known along the paths it sampled itself, so ``log_prob`` of any other value raises;
    this is the ``Delta(value, log_density)`` pattern of Pyro's guides, with the value drawn lazily so that
    Pyro's plates set the number of paths.

    :param BatchedMLP net: hidden vector field whose weights are the path.
    :param dict shapes: site name -> event shape of ``net``'s parameters (the order of the weight vector).
    :param torch.Tensor h0: initial hidden units ``(N, H)``.
    :param torch.Tensor w0: initial weights ``(D,)``.
    :param sigma: weight diffusion, positive float or ``(D,)`` tensor.
    :param drift: posterior drift correction (see :func:`solve_weight_path`), ``None`` for the OU prior.
    :param solver: :class:`SDESolver` or dict.
    :param str estimator: ``"plain"`` or ``"stl"``.

    Example::

        >>> from pyro_node_uq.nn import BatchedMLP
        >>> net = BatchedMLP("f", (2, 8, 2))
        >>> w0 = torch.cat([p.reshape(-1) for p in net.init_params().values()])
        >>> d = WeightPathFeatures(net, net.param_shapes(), torch.randn(5, 2), w0, sigma=0.1).expand((3,))
        >>> h1 = d.rsample()
        >>> h1.shape, d.log_prob(h1)
        (torch.Size([3, 5, 2]), tensor([0., 0., 0.]))
    """

    arg_constraints = {}  # noqa: RUF012
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, net, shapes, h0, w0, sigma, drift=None, solver=None, estimator="plain",
                 batch_shape=torch.Size(), validate_args=None):  # noqa: B008
        self.net, self.shapes, self.h0, self.w0 = net, shapes, h0, w0
        self.sigma, self.drift, self.estimator = sigma, drift, estimator
        self.solver = SDESolver.coerce(solver)
        self._cache = None  # (value, log_ratio, terminal weights) of the last draw
        super().__init__(torch.Size(batch_shape), h0.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return WeightPathFeatures(self.net, self.shapes, self.h0, self.w0, self.sigma, self.drift, self.solver,
                                  self.estimator, batch_shape)

    @property
    def weights(self):
        """Terminal weights ``w_1`` of the last draw, shape ``sample + batch + (D,)``."""
        if self._cache is None:
            raise RuntimeError("WeightPathFeatures.weights: draw a sample first")
        return self._cache[2]

    def rsample(self, sample_shape=torch.Size()):  # noqa: B008
        shape = torch.Size(sample_shape) + self.batch_shape
        h1, w1, log_ratio = solve_weight_path(self.w0, self.sigma, math.prod(shape), self.net, self.shapes, self.h0,
                                              self.drift, self.solver, self.estimator)
        value = h1.reshape(shape + self.event_shape)
        self._cache = (value, log_ratio.reshape(shape), w1.reshape(shape + w1.shape[-1:]))
        return value

    def log_prob(self, value):
        batch = value.shape[: value.dim() - 2]
        if self.drift is None:
            return value.new_zeros(batch)
        if self._cache is None or value is not self._cache[0]:
            raise NotImplementedError("WeightPathFeatures.log_prob: the posterior path law's density (relative to "
                                      "the prior) is only known along its own draws; score the value it sampled")
        return self._cache[1]

