"""Langevin dynamics as a ``pyro.infer.mcmc`` kernel: MALA / ULA with exact, learned or hybrid drift.

One transition, in the flattened unconstrained latent space z (sites in sorted order, as ``MCMC`` stores them),
with diagonal preconditioner M = diag(m) (the variances) and step size eps:

    z' = z + eps^2 / 2 * m * g(z) + eps * sqrt(m) * xi,      xi ~ Normal(0, I)

    g = grad log p(z | data)                                         drift="exact"
    g = s(z)            (the guide's learned score, ``guide.score``)  drift="learned"
    g = w * grad log p(z | data) + (1 - w) * s(z)                     drift="hybrid", w = ``hybrid_weight``

``adjust=True`` accepts z' with the Metropolis-Hastings probability of the Gaussian proposal pair (MALA), so the
chain targets the exact posterior whatever the drift; ``adjust=False`` always moves (ULA, biased by O(eps)).
The ensemble mode (``num_particles=P``) runs P independent chains in one kernel: each step evaluates the
potential of all P points in one model call inside a vectorising plate.

The transition itself is the pure :mod:`~pyro_node_uq.infer.mcmc.mala` kernel; this class is the Pyro shell
around it (set-up from a model, step-size search and adaptation, the ``MCMCKernel`` reporting contract).
"""
import math
from collections import OrderedDict

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import init_to_uniform
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.infer.mcmc.util import initialize_model
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.welford import WelfordCovariance
from pyro.util import optional

from ...nn import flatten_params, unflatten_params
from ..log_joint import LogJoint, value_and_grad
from . import mala

__all__ = ["LangevinKernel", "particles_to_chains"]

_DRIFTS = ("exact", "learned", "hybrid")
_PRECONDITIONERS = ("auto", "adapt", "guide", "identity")


def _ensemble_potential(log_joint):
    """The potential ``-log p`` of P points ``{site: (P, ...)}`` (the ensemble mode's vectorised potential)."""
    return lambda params: -log_joint(params)


def _adaptation_windows(warmup_steps):
    """End steps of the preconditioner adaptation windows (Stan's schedule: a 15% start buffer, doubling
    windows, a 10% end buffer in which only the step size is tuned)."""
    if warmup_steps < 20:
        return []
    start, end_buffer = max(int(0.15 * warmup_steps), 1), max(int(0.1 * warmup_steps), 1)
    stop, size, ends = warmup_steps - end_buffer, max(min(25, (warmup_steps - start - end_buffer) // 3), 5), []
    while start < stop:
        nxt = start + size if 3 * size <= stop - start else stop
        ends.append(nxt)
        start, size = nxt, 2 * size
    return ends


class LangevinKernel(MCMCKernel):
    r"""Metropolis-adjusted (MALA) or unadjusted (ULA) Langevin kernel for :class:`~pyro.infer.mcmc.MCMC`.

    The drift comes from the exact posterior score (autograd of the potential), from the learned score of a
    trained guide (``guide.score(z)``; no data-model gradient), or from their convex combination
    ``g = w * grad log p + (1 - w) * guide.score`` (``"hybrid"``: the exact gradient plus the weighted learned
    correction ``(1 - w) * (score - grad log p)``). With ``adjust=True`` the Metropolis-Hastings step makes the
    chain exact for any drift: a poor learned score only lowers the acceptance rate. Learned drift costs one
    forward model evaluation per step under MH and none at all without it.

    The guide is duck-typed: ``guide.score(z)`` maps ``(P, D)`` points of the guide's flattened unconstrained
    latent space (sites in ``guide._unconstrained_shapes`` order, else the model's trace order, each
    unconstrained by ``biject_to(support).inv``) to the estimated posterior score; ``guide.reference_scale``
    (``(D,)``, optional) is the std of its Gaussian reference and is the default preconditioner.

    Proposals that are non-finite, whose potential is non-finite or raises a solver error
    (:class:`~pyro_node_uq.distributions.NODEDivergenceError` or a handler registered in
    ``pyro.ops.integrator``), or whose energy error exceeds ``max_energy_error``, are rejected and counted as
    divergences (``diagnostics()["divergences"]``: post-warm-up step indices, the format ArviZ reads).

    :param model: a Pyro model (give exactly one of ``model`` and ``potential_fn``).
    :param potential_fn: potential energy of a dict of unconstrained values; in ensemble mode it receives
        values with a leading particle dim ``(P, ...)`` and must return ``(P,)``. Needs ``initial_params``.
    :param float step_size: initial step size (default: found by doubling/halving towards the target
        acceptance); required for ULA with learned drift, which has no acceptance statistic.
    :param bool adjust: Metropolis-Hastings correction (MALA) or none (ULA).
    :param str drift: ``"exact"``, ``"learned"`` or ``"hybrid"``.
    :param guide: an object with ``score(z)`` (and optionally ``reference_scale``), e.g. ``AutoLangevin``;
        needed for ``"learned"``/``"hybrid"``.
    :param float hybrid_weight: weight ``w`` in [0, 1] of the exact gradient in ``"hybrid"`` drift.
    :param preconditioner: diagonal variances m: ``"auto"`` (the guide's ``reference_scale ** 2`` when it has
        one, else ``"adapt"``), ``"adapt"`` (diagonal posterior variance estimated in warm-up windows),
        ``"guide"``, ``"identity"``, or a positive tensor of shape ``(D,)`` in the kernel's flat order.
    :param bool adapt_step_size: dual-averaging step-size adaptation during warm-up (for ULA, towards the
        MALA acceptance probability it would have had; needs the potential, so not with learned ULA).
    :param float target_accept_prob: target of the step-size adaptation (0.574 is optimal for MALA).
    :param int num_particles: number of chains advanced together (ensemble mode when > 1): every site gets a
        leading particle dim and each step costs one vectorised model evaluation for all particles.
    :param dict transforms: constrained-to-unconstrained transforms per site (default ``biject_to``).
    :param int max_plate_nesting: the model's plate depth (guessed when omitted).
    :param init_strategy: per-site initialisation (``init_to_uniform`` by default, as HMC).
    :param float max_energy_error: a proposal with ``U(z') - U(z)`` above this is a divergence.

    :ivar float step_size: the current (after warm-up: the adapted) step size.
    :ivar torch.Tensor variances: the current diagonal preconditioner ``(D,)`` in the kernel's flat order
        (sites sorted by name, each flattened).

    In ensemble mode ``MCMC.get_samples()`` has a particle dim after the draw dim; use
    :func:`particles_to_chains` to treat particles as chains (for R-hat, ESS). A solver failure that raises
    rejects the whole ensemble's step; a NODE model built with ``on_divergence="reject"`` scores diverging
    members as ``-inf`` instead, so only they are rejected.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro.infer import MCMC
        >>> from pyro_node_uq.infer import LangevinKernel
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> kernel = LangevinKernel(model, num_particles=8)
        >>> mcmc = MCMC(kernel, num_samples=200, warmup_steps=200, disable_progbar=True)
        >>> mcmc.run(torch.zeros(4))
        >>> mcmc.get_samples()["mu"].shape  # (draws, particles)
        torch.Size([200, 8])
    """

    def __init__(self, model=None, potential_fn=None, *, step_size=None, adjust=True, drift="exact", guide=None,
                 hybrid_weight=0.5, preconditioner="auto", adapt_step_size=True, target_accept_prob=0.574,
                 num_particles=1, transforms=None, max_plate_nesting=None, init_strategy=init_to_uniform,
                 max_energy_error=1000.0):
        if (model is None) == (potential_fn is None):
            raise ValueError("LangevinKernel: give exactly one of `model` and `potential_fn`")
        if drift not in _DRIFTS:
            raise ValueError(f"drift must be one of {_DRIFTS}, got {drift!r}")
        if drift != "exact" and not callable(getattr(guide, "score", None)):
            raise ValueError(f"drift={drift!r} needs a `guide` with a `score(z)` method, got {guide!r}")
        if not 0.0 <= hybrid_weight <= 1.0:
            raise ValueError(f"hybrid_weight must lie in [0, 1], got {hybrid_weight}")
        if not (torch.is_tensor(preconditioner) or preconditioner in _PRECONDITIONERS):
            raise ValueError(f"preconditioner must be a tensor of variances or one of {_PRECONDITIONERS}, "
                             f"got {preconditioner!r}")
        if isinstance(preconditioner, str) and preconditioner == "guide" and \
                getattr(guide, "reference_scale", None) is None:
            raise ValueError("preconditioner='guide' needs a guide with a `reference_scale`")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob}")
        if not adjust and drift == "learned" and step_size is None:
            raise ValueError("step_size: ULA with drift='learned' has no acceptance statistic to tune it; "
                             "give a step_size")
        self.model, self.potential_fn, self.transforms = model, potential_fn, transforms
        self.adjust, self.drift, self.guide, self.hybrid_weight = adjust, drift, guide, float(hybrid_weight)
        self.preconditioner = preconditioner
        self.adapt_step_size = adapt_step_size and (adjust or drift != "learned")
        self.target_accept_prob, self.num_particles = target_accept_prob, int(num_particles)
        self._init_step_size, self._max_plate_nesting = step_size, max_plate_nesting
        self._init_strategy, self.max_energy_error = init_strategy, float(max_energy_error)
        self._initial_params = None
        self.step_size, self.variances = step_size, None
        self._reset()
        super().__init__()

    # ------------------------------------------------------------------ state
    @property
    def ensemble(self):
        return self.num_particles > 1

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def _reset(self):
        self._t, self._warmup_steps, self._accept_sum, self._num_draws = 0, 0, 0.0, 0
        self._mean_accept_prob, self._divergences, self._particle_divergences = 0.0, [], None
        self._z = self._U = self._g = None
        self._windows, self._welford, self._dual = [], None, None

    def _uses_energy(self):
        return self.adjust or self.drift != "learned"

    def _uses_gradient(self):
        return self.drift != "learned"

    # ------------------------------------------------------------------ flat <-> dict
    def _flatten(self, params):
        params = {k: v.detach() for k, v in params.items()}
        if not self.ensemble:
            params = {k: v.unsqueeze(0) for k, v in params.items()}
        return flatten_params(params, self._shapes)

    def _unflatten(self, z):
        params = unflatten_params(z, self._shapes)
        return params if self.ensemble else {k: v.squeeze(0) for k, v in params.items()}

    # ------------------------------------------------------------------ potential, score, drift
    def _energy(self, z, with_grad):
        """Potential ``U`` ``(P,)`` and, when ``with_grad``, ``grad U`` ``(P, D)``; a failed solve, a non-finite
        value or a point whose unconstraining transform no longer round-trips (a saturated sigmoid or exp, where
        the density is numerically wrong) gives ``inf``."""
        P = z.shape[0]

        def log_density(x):
            return -self.potential_fn(self._unflatten(x)).reshape(-1).expand(P)

        value, grad, ok = value_and_grad(log_density, z, with_grad)
        ok = ok & self._round_trips(z)
        U = torch.where(ok, -value, torch.full_like(value, math.inf))
        return U, (None if grad is None else torch.where(ok.unsqueeze(-1), -grad, torch.zeros_like(grad)))

    def _round_trips(self, z):
        """Members whose constrained values map back to their unconstrained points (to 1e-3, relative)."""
        ok = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        if not self.transforms:
            return ok
        for name, u in unflatten_params(z, self._shapes).items():
            t = self.transforms.get(name)
            if t is None:
                continue
            with torch.no_grad():
                back = t(t.inv(u))
            close = torch.isclose(back, u, rtol=1e-3, atol=1e-3) | (back == u)
            ok = ok & close.reshape(z.shape[0], -1).all(-1)
        return ok

    def _score(self, z):
        out = self.guide.score(z[..., self._perm]).detach()
        if out.shape != z.shape:
            raise ValueError(f"guide.score returned shape {tuple(out.shape)} for points of shape {tuple(z.shape)}")
        return out[..., self._inv_perm]

    def _evaluate(self, z):
        """Potential (``None`` if not needed) and drift g at ``z``."""
        U, grad_U = self._energy(z, self._uses_gradient()) if self._uses_energy() else (None, None)
        if self.drift == "exact":
            return U, -grad_U
        score = self._score(z)
        if self.drift == "learned":
            return U, score
        return U, -self.hybrid_weight * grad_U + (1.0 - self.hybrid_weight) * score

    # ------------------------------------------------------------------ setup
    def _setup_guide_order(self, args, kwargs):
        """Index map between the kernel's flat order (sorted sites) and the guide's."""
        self._perm = self._inv_perm = None
        if self.guide is None:
            return
        shapes = getattr(self.guide, "_unconstrained_shapes", None)
        untraced = getattr(self.guide, "prototype_trace", True) is None  # an AutoGuide that never ran
        if shapes is None and untraced and hasattr(self.guide, "_setup_prototype") and self.model is not None:
            self.guide._setup_prototype(*args, **kwargs)
            shapes = getattr(self.guide, "_unconstrained_shapes", None)
        order = list(shapes) if shapes is not None else self._model_order
        if sorted(order) != sorted(self._shapes):
            raise ValueError(f"guide: its latent sites {sorted(order)} differ from the kernel's {sorted(self._shapes)}")
        starts, pos = {}, 0
        for name, shape in self._shapes.items():
            starts[name], pos = pos, pos + int(torch.Size(shape).numel())
            if shapes is not None and torch.Size(shapes[name]).numel() != torch.Size(shape).numel():
                raise ValueError(f"guide: site {name!r} has {torch.Size(shapes[name]).numel()} unconstrained "
                                 f"entries in the guide but {torch.Size(shape).numel()} in the model")
        device = next(iter(self._initial_params.values())).device
        self._perm = torch.cat([torch.arange(starts[n], starts[n] + torch.Size(self._shapes[n]).numel(), device=device)
                                for n in order])
        self._inv_perm = torch.argsort(self._perm)

    def _initial_preconditioner(self, like):
        D = like.shape[-1]
        p = self.preconditioner
        if isinstance(p, str) and p == "auto":
            p = "guide" if getattr(self.guide, "reference_scale", None) is not None else "adapt"
        self._adapt_precond = isinstance(p, str) and p == "adapt"
        if torch.is_tensor(p):
            m = p.detach().to(like).reshape(-1)
        elif p == "guide":
            m = torch.as_tensor(self.guide.reference_scale).detach().to(like).reshape(-1)[self._inv_perm] ** 2
        else:
            m = torch.ones(D, dtype=like.dtype, device=like.device)
        if m.shape != (D,) or not bool(torch.all(torch.isfinite(m) & (m > 0))):
            raise ValueError(f"preconditioner: expected {D} positive finite variances, got shape {tuple(m.shape)}")
        return m

    def setup(self, warmup_steps, *args, **kwargs):
        self._reset()
        self._warmup_steps, self.step_size = warmup_steps, self._init_step_size
        if self.model is not None:
            init, potential_fn, transforms, trace = initialize_model(
                self.model, args, kwargs, transforms=self.transforms, max_plate_nesting=self._max_plate_nesting,
                num_chains=self.num_particles, init_strategy=self._init_strategy, initial_params=self._initial_params)
            self.transforms, self._initial_params = transforms, init
            self._model_order = [name for name, _ in trace.iter_stochastic_nodes() if name in transforms]
            if not init:  # no continuous latent: nothing to sample, as HMC/NUTS
                self._shapes = OrderedDict()
                return
            if self.ensemble:
                try:
                    log_joint = LogJoint(self.model, trace, transforms, args, kwargs)
                except ValueError as e:
                    raise ValueError(f"LangevinKernel(num_particles={self.num_particles}): {e}") from None
                self.potential_fn = _ensemble_potential(log_joint)
            else:
                self.potential_fn = potential_fn
        elif self._initial_params is None:
            raise ValueError("initial_params: LangevinKernel with `potential_fn` needs initial parameters "
                             "(set kernel.initial_params or pass MCMC(initial_params=...))")
        else:
            self.transforms = {} if self.transforms is None else self.transforms
            self._model_order = sorted(self._initial_params)
        lead = 1 if self.ensemble else 0
        self._shapes = OrderedDict((k, self._initial_params[k].shape[lead:]) for k in sorted(self._initial_params))
        if self.ensemble and any(v.shape[0] != self.num_particles for v in self._initial_params.values()):
            raise ValueError(f"initial_params: ensemble mode needs a leading dim of num_particles="
                             f"{self.num_particles} on every site")
        self._setup_guide_order(args, kwargs)
        self._z = self._flatten(self._initial_params)
        self.variances = self._initial_preconditioner(self._z)
        self._U, self._g = self._evaluate(self._z)
        if not bool(torch.isfinite(self._g).all()) or (self._U is not None and not bool(torch.isfinite(self._U).all())):
            raise ValueError("initial_params: the potential or drift is not finite at the initial point")
        self._particle_divergences = [[] for _ in range(self._z.shape[0])]
        if warmup_steps > 0:
            self._windows = _adaptation_windows(warmup_steps) if self._adapt_precond else []
            self._welford = WelfordCovariance(diagonal=True)
            if self.step_size is None:
                self.step_size = self._find_reasonable_step_size()
            self._dual = DualAveraging(prox_center=math.log(10 * self.step_size))
        elif self.step_size is None:
            self.step_size = self._find_reasonable_step_size()

    def _find_reasonable_step_size(self):
        """Double or halve from 1 until the mean MALA acceptance crosses the target."""
        eps, direction = 1.0, None
        for i in range(30):
            _, log_alpha, _ = mala.propose(self._state(), self._noise(f"xi_presample_{i}"), step_size=eps,
                                           variances=self.variances, evaluate=self._evaluate,
                                           max_energy_error=self.max_energy_error)
            up = log_alpha.exp().clamp(max=1).nan_to_num(0.0).mean().item() > self.target_accept_prob
            if direction is not None and up != direction:
                break
            direction, eps = up, eps * (2.0 if up else 0.5)
        return eps

    # ------------------------------------------------------------------ one step
    def _state(self):
        return mala.MALAState(self._z, self._U, self._g)

    def _noise(self, name):
        return pyro.sample(name, dist.Normal(torch.zeros_like(self._z), 1.0).to_event(2))

    def sample(self, params):
        if not self._shapes:  # a model without continuous latents
            return {}
        if self._z is None:  # cache cleared by the caller
            self._z = self._flatten(params)
            self._U, self._g = self._evaluate(self._z)
        warmup = self._t < self._warmup_steps
        with optional(pyro.validation_enabled(False), warmup):
            xi = self._noise(f"xi_t={self._t}")
            u = None
            if self.adjust:
                u = pyro.sample(f"rand_t={self._t}", dist.Uniform(self._z.new_zeros(self._z.shape[:1]), 1.0)
                                .to_event(1))
            state, info = mala.step(self._state(), xi, u, step_size=self.step_size, variances=self.variances,
                                    evaluate=self._evaluate, max_energy_error=self.max_energy_error)
        self._z, self._U, self._g = state
        self.last_info = info  # per-particle acceptance probability, acceptance and divergence of this step

        self._t += 1
        mean_accept = info.accept_prob.mean().item()
        if warmup:
            self._adapt(mean_accept)
            n = self._t
        else:
            draw = self._t - self._warmup_steps - 1
            if bool(info.divergent.any()):
                self._divergences.append(draw)
                for p in info.divergent.nonzero().flatten().tolist():
                    self._particle_divergences[p].append(draw)
            self._accept_sum += info.accepted.to(self._z.dtype).mean().item()
            self._num_draws = n = draw + 1
        self._mean_accept_prob += (mean_accept - self._mean_accept_prob) / n
        return self._unflatten(self._z)

    def _adapt(self, mean_accept):
        if self._adapt_precond and self._windows:
            for row in self._z:
                self._welford.update(row)
            if self._t == self._windows[0]:
                self._windows.pop(0)
                self.variances = self._welford.get_covariance(regularize=True)
                self._welford.reset()
                if self.adapt_step_size:
                    self._dual = DualAveraging(prox_center=math.log(10 * self.step_size))
        if self.adapt_step_size:
            self._dual.step(self.target_accept_prob - mean_accept)
            log_step, log_avg = self._dual.get_state()
            self.step_size = math.exp(log_avg if self._t == self._warmup_steps else log_step)

    # ------------------------------------------------------------------ Pyro's reporting contract
    def logging(self):
        step = "-" if self.step_size is None else f"{self.step_size:.2e}"
        return OrderedDict([("step size", step), ("acc. prob", f"{self._mean_accept_prob:.3f}")])

    def diagnostics(self):
        """``divergences`` (post-warm-up steps where any particle diverged), ``acceptance rate`` (mean over
        particles; for ULA the fraction of non-divergent moves) and, in ensemble mode, ``divergences by particle``."""
        out = {"divergences": self._divergences,
               "acceptance rate": self._accept_sum / max(self._num_draws, 1)}
        if self.ensemble:
            out["divergences by particle"] = self._particle_divergences
        return out

    def cleanup(self):
        self._reset()
        self._initial_params = None


def particles_to_chains(samples, num_particles):
    """Turn ensemble samples ``(chains, draws, P, ...)`` (``mcmc.get_samples(group_by_chain=True)``) into
    ``(chains * P, draws, ...)``: every particle is an independent chain.

    :param dict samples: site name -> tensor grouped by chain.
    :param int num_particles: the kernel's ``num_particles``.
    """
    out = {}
    for name, value in samples.items():
        if value.dim() < 3 or value.shape[2] != num_particles:
            raise ValueError(f"site {name!r}: expected shape (chains, draws, {num_particles}, ...), "
                             f"got {tuple(value.shape)}")
        out[name] = value.movedim(2, 1).reshape((-1,) + value.shape[1:2] + value.shape[3:])
    return out
