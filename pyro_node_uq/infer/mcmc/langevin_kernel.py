"""Langevin dynamics as a ``pyro.infer.mcmc`` kernel: MALA / ULA with an exact, learned or blended drift.

One transition, in the flattened unconstrained latent space z (sites in sorted order, as ``MCMC`` stores them),
with diagonal preconditioner M = diag(m) (the variances) and step size eps:

    z' = z + eps^2 / 2 * m * g(z) + eps * sqrt(m) * xi,      xi ~ Normal(0, I)

    g = grad log p(z | data)                                         drift="exact"
    g = s(z)            (the guide's learned score, ``guide.score``)  drift="learned"
    g = w * grad log p(z | data) + (1 - w) * s(z)                     drift="blend", w = ``exact_weight``

``adjust=True`` accepts z' with the Metropolis-Hastings probability of the Gaussian proposal pair (MALA), so the
chain targets the exact posterior whatever the drift; ``adjust=False`` always moves (ULA, biased by O(eps)).
The ensemble mode (``num_particles=P``) runs P independent chains in one kernel: each step evaluates the
potential of all P points in one model call inside a vectorising plate.

The transition is the pure :mod:`~pyro_node_uq.infer.mcmc.mala` step, the drift a :mod:`~.score` term and the
warm-up the pure :mod:`~.adaptation` algorithm; this class is the Pyro shell around them (set-up from a model,
step-size search, the ``MCMCKernel`` reporting contract).
"""
import math
import warnings
from collections import OrderedDict
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import init_to_uniform
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.infer.mcmc.util import initialize_model
from pyro.util import optional

from ...nn import flatten_params, unflatten_params
from .._pyro_compat import is_unset_autoguide, setup_prototype, unconstrained_shapes
from ..log_joint import LogJoint, value_and_grad
from . import adaptation, mala
from .score import BlendedScore, ExactScore, LearnedScore

__all__ = ["LangevinKernel", "particles_to_chains"]

#: drift options; ``"hybrid"`` is the deprecated spelling of ``"blend"``
DRIFTS = ("exact", "learned", "blend")
_PRECONDITIONERS = ("auto", "adapt", "guide", "identity")
MAX_GROWTH = 2.0


def _ensemble_potential(log_joint):
    """The potential ``-log p`` of P points ``{site: (P, ...)}`` (the ensemble mode's vectorised potential)."""
    return lambda params: -log_joint(params)


class LangevinKernel(MCMCKernel):
    r"""Metropolis-adjusted (MALA) or unadjusted (ULA) Langevin kernel for :class:`~pyro.infer.mcmc.MCMC`.

    The drift comes from the exact posterior score (autograd of the potential), from the learned score of a
    trained guide (``guide.score(z)``; no data-model gradient), or from their convex combination
    ``g = w * grad log p + (1 - w) * guide.score`` (``"blend"``: the exact gradient plus the weighted learned
    correction ``(1 - w) * (score - grad log p)``). With ``adjust=True`` the Metropolis-Hastings step makes the
    chain exact for any drift: a poor learned score only lowers the acceptance rate. Learned drift costs one
    forward model evaluation per step under MH and none at all without it.

    The guide is duck-typed: ``guide.score(z)`` maps ``(P, D)`` points of the guide's flattened unconstrained
    latent space (sites in the order of an autoguide's latent, else the model's trace order, each
    unconstrained by ``biject_to(support).inv``) to the estimated posterior score; ``guide.reference_scale``
    (``(D,)``, optional) is the std of its Gaussian reference and is the default preconditioner.

    Proposals that are non-finite, whose potential is non-finite or raises a solver error
    (one registered with ``pyro.ops.integrator.register_exception_handler``, as
    :class:`~pyro_node_uq.distributions.NODEDivergenceError` is), or whose energy error exceeds ``max_energy_error``, are rejected and counted as
    divergences (``diagnostics()["divergences"]``: post-warm-up step indices, the format ArviZ reads).

    :param model: a Pyro model (give exactly one of ``model`` and ``potential_fn``).
    :param potential_fn: potential energy of a dict of unconstrained values; in ensemble mode it receives
        values with a leading particle dim ``(P, ...)`` and must return ``(P,)``. Needs ``initial_params``.
    :param float step_size: initial step size (default: found by doubling/halving towards the target
        acceptance); required for ULA with learned drift, which has no acceptance statistic.
    :param bool adjust: Metropolis-Hastings correction (MALA) or none (ULA).
    :param str drift: ``"exact"``, ``"learned"`` or ``"blend"`` (``"hybrid"``, its old name, still works with a
        ``FutureWarning``).
    :param guide: an object with ``score(z)`` (and optionally ``reference_scale``), e.g. ``AutoLangevin``;
        needed for ``"learned"``/``"blend"``.
    :param float exact_weight: weight ``w`` in [0, 1] of the exact gradient in ``"blend"`` drift.
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
    :param full_mass: a dense preconditioner (HMC's option of the same name and format): ``True`` for one dense
        covariance of all sites, or a list of tuples of site names, each a dense block (the other sites
        diagonal); estimated in warm-up, so only with ``preconditioner="adapt"`` (or ``"auto"`` without a guide).
    :param float hybrid_weight: the old name of ``exact_weight`` (a ``FutureWarning``).

    :ivar float step_size: the current (after warm-up: the adapted) step size.
    :ivar torch.Tensor variances: the current preconditioner in the kernel's flat order (sites sorted by name,
        each flattened): variances ``(D,)``, or with ``full_mass`` a block-diagonal covariance ``(D, D)``.
    :ivar dict inverse_mass_matrix: the same in HMC's form, one entry per block of sites.

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
                 exact_weight=0.5, preconditioner="auto", adapt_step_size=True, target_accept_prob=0.574,
                 num_particles=1, transforms=None, max_plate_nesting=None, init_strategy=init_to_uniform,
                 max_energy_error=1000.0, full_mass=False, hybrid_weight=None):
        if (model is None) == (potential_fn is None):
            raise ValueError("LangevinKernel: give exactly one of `model` and `potential_fn`")
        drift, exact_weight = _renamed_options(drift, exact_weight, hybrid_weight)
        if drift not in DRIFTS:
            raise ValueError(f"drift must be one of {DRIFTS}, got {drift!r}")
        if drift != "exact" and not callable(getattr(guide, "score", None)):
            raise ValueError(f"drift={drift!r} needs a `guide` with a `score(z)` method, got {guide!r}")
        if not 0.0 <= exact_weight <= 1.0:
            raise ValueError(f"exact_weight (the old hybrid_weight) must lie in [0, 1], got {exact_weight}")
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
        full_mass = _check_full_mass(full_mass)
        if full_mass and not (isinstance(preconditioner, str) and preconditioner in ("auto", "adapt")):
            raise ValueError(f"full_mass: a dense preconditioner is estimated in warm-up; it needs "
                             f"preconditioner='adapt', got {preconditioner!r}")
        if not adjust and drift == "learned" and step_size is None:
            raise ValueError("step_size: ULA with drift='learned' has no acceptance statistic to tune it; "
                             "give a step_size")
        self.model, self.adjust, self.drift, self.guide = model, adjust, drift, guide
        self.exact_weight, self.preconditioner, self.full_mass = float(exact_weight), preconditioner, full_mass
        self.adapt_step_size = adapt_step_size and (adjust or drift != "learned")
        self.target_accept_prob, self.num_particles = target_accept_prob, int(num_particles)
        self.max_energy_error, self._initial_params = float(max_energy_error), None
        self._options = {"step_size": step_size, "potential_fn": potential_fn, "transforms": transforms,
                             "max_plate_nesting": max_plate_nesting, "init_strategy": init_strategy}
        self._target = self._chain = self._adaptation = self.last_info = self._mass_adapter = None
        self._stats = _Stats.start(0, 1)
        super().__init__()

    # ------------------------------------------------------------------ what setup() derived
    @property
    def ensemble(self):
        return self.num_particles > 1

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    @property
    def hybrid_weight(self):
        """Deprecated name of :attr:`exact_weight`."""
        return self.exact_weight

    @property
    def potential_fn(self):
        """The potential energy of a dict of unconstrained values (the model's, once :meth:`setup` has run)."""
        return self._options["potential_fn"] if self._target is None else self._target.potential_fn

    @property
    def transforms(self):
        return self._options["transforms"] if self._target is None else self._target.transforms

    @property
    def step_size(self):
        """The current (after warm-up: the adapted) step size."""
        return self._options["step_size"] if self._adaptation is None else self._adaptation.step_size

    @step_size.setter
    def step_size(self, value):
        if self._adaptation is None:
            self._options["step_size"] = value
        else:
            self._adaptation = self._adaptation._replace(step_size=float(value))

    @property
    def variances(self):
        """The current preconditioner in the kernel's flat order: variances ``(D,)`` or, with ``full_mass``, a
        block-diagonal covariance ``(D, D)``."""
        return None if self._adaptation is None else self._adaptation.variances

    @property
    def mass_matrix_adapter(self):
        """An optional mass-matrix adapter of Pyro's (``BlockMassMatrix``, ``ArrowheadMassMatrix``, or any object
        with their ``configure``, ``update``, ``end_adaptation`` and ``inverse_mass_matrix``), as HMC's
        ``mass_matrix_adapter``: when set, it estimates the preconditioner at the end of each warm-up window (from
        every particle's point and potential gradient; for a learned drift the negated drift stands in for the
        gradient) and the kernel uses its inverse mass matrix.  ``None`` (the default): the kernel's own
        estimate."""
        return self._mass_adapter

    @mass_matrix_adapter.setter
    def mass_matrix_adapter(self, value):
        missing = [m for m in ("configure", "update", "end_adaptation", "inverse_mass_matrix")
                   if value is not None and not hasattr(value, m)]
        if missing:
            raise TypeError(f"mass_matrix_adapter: expected an adapter like Pyro's BlockMassMatrix, got "
                            f"{type(value).__name__} without {missing}")
        self._mass_adapter = value

    @property
    def inverse_mass_matrix(self):
        """The preconditioner in HMC's form: ``{(site names): block}``, a dense ``(n, n)`` block for each group of
        ``full_mass`` and variances ``(n,)`` for the other sites (one Langevin step is one leapfrog step of HMC
        with this inverse mass matrix); with a :attr:`mass_matrix_adapter`, the adapter's.  Empty before
        :meth:`setup`."""
        if self.variances is None:
            return {}
        if self._mass_adapter is not None:
            return self._mass_adapter.inverse_mass_matrix
        m, out = self.variances, {}
        for names, index, dense in _mass_blocks(self._target.shapes, self.full_mass, m.device):
            block = m[index] if m.dim() == 1 else m[index][:, index]
            out[names] = block if dense else (block if block.dim() == 1 else block.diagonal())
        return out

    @inverse_mass_matrix.setter
    def inverse_mass_matrix(self, value):
        if self._adaptation is None:
            raise RuntimeError("inverse_mass_matrix: the kernel has no preconditioner before setup()")
        if self._mass_adapter is not None:
            self._mass_adapter.inverse_mass_matrix = value
            self._adaptation = self._adaptation._replace(variances=self._adapter_variances())
            return
        m = torch.zeros_like(self.variances)
        for names, index, dense in _mass_blocks(self._target.shapes, self.full_mass, m.device):
            block = value.get(names) if isinstance(value, dict) else None
            n = len(index)
            if not torch.is_tensor(block) or block.shape != ((n, n) if dense else (n,)) or \
                    not bool(torch.isfinite(block).all()):
                raise ValueError(f"inverse_mass_matrix: expected an entry {names} of shape "
                                 f"{(n, n) if dense else (n,)}, got {value!r}")
            block = block.detach().to(m)
            if m.dim() == 1:
                m[index] = block
            else:
                m[index.unsqueeze(-1), index] = block if dense else torch.diag_embed(block)
        diag = m if m.dim() == 1 else m.diagonal()
        if not bool((diag > 0).all()):
            raise ValueError("inverse_mass_matrix: the variances must be positive")
        self._adaptation = self._adaptation._replace(variances=m)

    def _flatten(self, params):
        params = {k: v.detach() for k, v in params.items()}
        if not self.ensemble:
            params = {k: v.unsqueeze(0) for k, v in params.items()}
        return flatten_params(params, self._target.shapes)

    def _unflatten(self, z):
        params = unflatten_params(z, self._target.shapes)
        return params if self.ensemble else {k: v.squeeze(0) for k, v in params.items()}

    # ------------------------------------------------------------------ potential and drift
    def _energy(self, z, with_grad):
        """Potential ``U`` ``(P,)`` and, when ``with_grad``, ``grad U`` ``(P, D)``; a failed solve, a non-finite
        value or a point whose unconstraining transform no longer round-trips (a saturated sigmoid or exp, where
        the density is numerically wrong) gives ``inf``."""
        P, potential_fn = z.shape[0], self._target.potential_fn

        def log_density(x):
            return -potential_fn(self._unflatten(x)).reshape(-1).expand(P)

        value, grad, ok = value_and_grad(log_density, z, with_grad)
        ok = ok & _round_trips(z, self._target.shapes, self._target.transforms)
        U = torch.where(ok, -value, torch.full_like(value, math.inf))
        return U, (None if grad is None else torch.where(ok.unsqueeze(-1), -grad, torch.zeros_like(grad)))

    def _evaluate(self, z):
        """Potential (``None`` if not needed) and drift g at ``z``."""
        return self._target.drift(z, self._energy if self.adjust or self.drift != "learned" else None)

    def _learned_score(self, perm, inv_perm):
        def score(z):
            out = self.guide.score(z[..., perm]).detach()
            if out.shape != z.shape:
                raise ValueError(f"guide.score returned shape {tuple(out.shape)} for points of shape "
                                 f"{tuple(z.shape)}")
            return out[..., inv_perm]
        return LearnedScore(score)

    def _make_drift(self, perm, inv_perm):
        if self.drift == "exact":
            return ExactScore()
        learned = self._learned_score(perm, inv_perm)
        return learned if self.drift == "learned" else BlendedScore(self.exact_weight, learned)

    # ------------------------------------------------------------------ setup
    def _model_target(self, args, kwargs):
        """Initial values, potential, transforms and the model's site order from the model."""
        o = self._options
        init, potential_fn, transforms, trace = initialize_model(
            self.model, args, kwargs, transforms=o["transforms"], max_plate_nesting=o["max_plate_nesting"],
            num_chains=self.num_particles, init_strategy=o["init_strategy"], initial_params=self.initial_params)
        order = [name for name, _ in trace.iter_stochastic_nodes() if name in transforms]
        if init and self.ensemble:
            try:
                potential_fn = _ensemble_potential(LogJoint(self.model, trace, transforms, args, kwargs))
            except ValueError as e:
                raise ValueError(f"LangevinKernel(num_particles={self.num_particles}): {e}") from None
        return init, potential_fn, transforms, order

    def setup(self, warmup_steps, *args, **kwargs):
        if self.model is not None:
            init, potential_fn, transforms, order = self._model_target(args, kwargs)
        elif self.initial_params is None:
            raise ValueError("initial_params: LangevinKernel with `potential_fn` needs initial parameters "
                             "(set kernel.initial_params or pass MCMC(initial_params=...))")
        else:
            init, potential_fn = self.initial_params, self._options["potential_fn"]
            transforms, order = self._options["transforms"] or {}, sorted(self.initial_params)
        self.initial_params = init
        lead = 1 if self.ensemble else 0
        shapes = OrderedDict((k, init[k].shape[lead:]) for k in sorted(init))
        if self.ensemble and any(v.shape[0] != self.num_particles for v in init.values()):
            raise ValueError(f"initial_params: ensemble mode needs a leading dim of num_particles="
                             f"{self.num_particles} on every site")
        perm, inv_perm = self._guide_order(shapes, order, init, args, kwargs) if init else (None, None)
        self._target = _Target(potential_fn, transforms, shapes, self._make_drift(perm, inv_perm))
        self._stats, self.last_info = _Stats.start(warmup_steps, 1), None
        self._chain = self._adaptation = None
        if not shapes:  # no continuous latent: nothing to sample, as HMC/NUTS
            return
        z = self._flatten(init)
        variances = self._initial_variances(z, inv_perm)
        self._chain = mala.init(z, self._evaluate)
        if not bool(torch.isfinite(self._chain.drift).all()) or \
                (self._chain.potential is not None and not bool(torch.isfinite(self._chain.potential).all())):
            raise ValueError("initial_params: the potential or drift is not finite at the initial point")
        self._stats = _Stats.start(warmup_steps, z.shape[0])
        step_size = self._options["step_size"]
        adapt_variances = _resolve_preconditioner(self.preconditioner, self.guide) == "adapt"
        if self.full_mass and not adapt_variances:
            raise ValueError("full_mass: a dense preconditioner is estimated in warm-up; this kernel's guide gives "
                             "a fixed preconditioner (use preconditioner='adapt')")
        if step_size is None:
            step_size = self._find_reasonable_step_size(variances)
        blocks = _block_mask(shapes, self.full_mass, z.device) if self.full_mass else None
        self._adaptation = adaptation.init(step_size, variances, warmup_steps, adapt_variances, blocks)
        if self._mass_adapter is not None:
            if not adapt_variances:
                raise ValueError("mass_matrix_adapter: the adapter estimates the preconditioner in warm-up; it needs "
                                 "preconditioner='adapt'")
            shape = {names: (len(index),) * (2 if dense else 1)
                     for names, index, dense in _mass_blocks(shapes, self.full_mass, z.device)}
            self._mass_adapter.configure(shape, True, options={"dtype": z.dtype, "device": z.device})
            self._adaptation = self._adaptation._replace(variances=self._adapter_variances())

    def _adapter_variances(self):
        """The adapter's inverse mass matrix in the kernel's flat order: variances ``(D,)`` when every block is
        diagonal, else a ``(D, D)`` matrix."""
        blocks = self._mass_adapter.inverse_mass_matrix
        index = {names: _mass_blocks(self._target.shapes, [names], None)[0][1] for names in blocks}
        D = sum(int(torch.Size(shape).numel()) for shape in self._target.shapes.values())
        like = next(iter(blocks.values()))
        if all(b.dim() == 1 for b in blocks.values()):
            m = like.new_zeros(D)
            for names, b in blocks.items():
                m[index[names].to(m.device)] = b
            return m
        m = like.new_zeros(D, D)
        for names, b in blocks.items():
            i = index[names].to(m.device)
            m[i.unsqueeze(-1), i] = b if b.dim() == 2 else torch.diag_embed(b)
        return m

    def _adapter_update(self):
        """Feed the adapter every particle's point and potential gradient in a warm-up window; at a window's end
        (when the own adaptation has just estimated its preconditioner) take the adapter's instead."""
        ends = self._adaptation.windows
        if not ends:
            return False
        z, grad = self._unflatten_rows(self._chain.z), self._unflatten_rows(-self._chain.drift)
        for p in range(self._chain.z.shape[0]):
            self._mass_adapter.update({k: v[p] for k, v in z.items()}, {k: v[p] for k, v in grad.items()})
        if self._stats.t == ends[0]:
            self._mass_adapter.end_adaptation()
            return True
        return False

    def _unflatten_rows(self, z):
        """``{site: (P, ...)}`` of flat rows ``(P, D)`` (a particle dim also outside ensemble mode)."""
        return unflatten_params(z, self._target.shapes)

    def _guide_order(self, shapes, model_order, init, args, kwargs):
        """Index map between the kernel's flat order (sorted sites) and the guide's."""
        if self.guide is None:
            return None, None
        guide_shapes = unconstrained_shapes(self.guide)
        if guide_shapes is None and self.model is not None and is_unset_autoguide(self.guide):
            guide_shapes = setup_prototype(self.guide, *args, **kwargs)
        order = list(guide_shapes) if guide_shapes is not None else model_order
        if sorted(order) != sorted(shapes):
            raise ValueError(f"guide: its latent sites {sorted(order)} differ from the kernel's {sorted(shapes)}")
        starts, pos = {}, 0
        for name, shape in shapes.items():
            starts[name], pos = pos, pos + int(torch.Size(shape).numel())
            if guide_shapes is not None and torch.Size(guide_shapes[name]).numel() != torch.Size(shape).numel():
                raise ValueError(f"guide: site {name!r} has {torch.Size(guide_shapes[name]).numel()} unconstrained "
                                 f"entries in the guide but {torch.Size(shape).numel()} in the model")
        device = next(iter(init.values())).device
        perm = torch.cat([torch.arange(starts[n], starts[n] + torch.Size(shapes[n]).numel(), device=device)
                          for n in order])
        return perm, torch.argsort(perm)

    def _initial_variances(self, like, inv_perm):
        D = like.shape[-1]
        p = _resolve_preconditioner(self.preconditioner, self.guide)
        if torch.is_tensor(p):
            m = p.detach().to(like).reshape(-1)
        elif p == "guide":
            m = torch.as_tensor(self.guide.reference_scale).detach().to(like).reshape(-1)[inv_perm] ** 2
        else:
            m = torch.ones(D, dtype=like.dtype, device=like.device)
        if m.shape != (D,) or not bool(torch.all(torch.isfinite(m) & (m > 0))):
            raise ValueError(f"preconditioner: expected {D} positive finite variances, got shape {tuple(m.shape)}")
        return m

    def _find_reasonable_step_size(self, variances):
        """Double or halve from 1 until the mean MALA acceptance crosses the target."""
        eps, direction = 1.0, None
        for i in range(30):
            _, log_alpha, _ = mala.propose(self._chain, self._noise(f"xi_presample_{i}"), step_size=eps,
                                           variances=variances, evaluate=self._evaluate,
                                           max_energy_error=self.max_energy_error)
            up = log_alpha.exp().clamp(max=1).nan_to_num(0.0).mean().item() > self.target_accept_prob
            if direction is not None and up != direction:
                break
            direction, eps = up, eps * (2.0 if up else 0.5)
        return eps

    # ------------------------------------------------------------------ one step
    def _noise(self, name):
        z = self._chain.z
        return pyro.sample(name, dist.Normal(torch.zeros_like(z), 1.0).to_event(2))

    def _acceptance_draw(self, name):
        z = self._chain.z
        return pyro.sample(name, dist.Uniform(z.new_zeros(z.shape[:1]), 1.0).to_event(1)) if self.adjust else None

    def sample(self, params):
        if self._chain is None:
            if not self._target.shapes:  # a model without continuous latents
                return {}
            self._chain = mala.init(self._flatten(params), self._evaluate)  # after clear_cache()
        t, warmup = self._stats.t, self._stats.t < self._stats.warmup_steps
        with optional(pyro.validation_enabled(False), warmup):
            xi, u = self._noise(f"xi_t={t}"), self._acceptance_draw(f"rand_t={t}")
            self._chain, self.last_info = mala.step(self._chain, xi, u, step_size=self.step_size,
                                                    variances=self.variances, evaluate=self._evaluate,
                                                    max_energy_error=self.max_energy_error)
        self._stats = self._stats.record(self.last_info)
        if warmup:
            window_end = self._adapter_update() if self._mass_adapter is not None else False
            self._adaptation = adaptation.update(
                self._adaptation, self._stats.t, self._chain.z, self.last_info.accept_prob.mean().item(),
                warmup_steps=self._stats.warmup_steps, target_accept_prob=self.target_accept_prob,
                adapt_step_size=self.adapt_step_size, max_growth=MAX_GROWTH)
            if window_end:
                self._adaptation = self._adaptation._replace(variances=self._adapter_variances())
        return self._unflatten(self._chain.z)

    # ------------------------------------------------------------------ Pyro's reporting contract
    def logging(self):
        step = "-" if self.step_size is None else f"{self.step_size:.2e}"
        return OrderedDict([("step size", step), ("acc. prob", f"{self._stats.mean_accept_prob:.3f}")])

    def diagnostics(self):
        """``divergences`` (post-warm-up steps where any particle diverged), ``acceptance rate`` (mean over
        particles; for ULA the fraction of non-divergent moves) and, in ensemble mode, ``divergences by particle``."""
        s = self._stats
        out = {"divergences": s.divergences, "acceptance rate": s.accept_sum / max(s.num_draws, 1)}
        if self.ensemble:
            out["divergences by particle"] = s.particle_divergences
        return out

    def clear_cache(self):
        """Forget the potential and drift cached at the chain's point: the next :meth:`sample` re-evaluates them
        at the parameters it is given (as Pyro's HMC)."""
        self._chain = None

    def _cache(self, z, potential_energy, z_grads=None):
        """Set the chain's cached point, potential and its gradient (HMC's method of the same name and
        signature): the next :meth:`sample` proposes from them.  Without ``z_grads`` (or for a drift that is not
        the exact score) the drift is evaluated at ``z``."""
        flat = self._flatten(z)
        U = torch.as_tensor(potential_energy, dtype=flat.dtype, device=flat.device).detach().reshape(-1)
        U = U.expand(flat.shape[0]).clone()
        if z_grads is not None and self.drift == "exact":
            drift = -self._flatten(z_grads)
        else:
            drift = self._evaluate(flat)[1]
        self._chain = mala.MALAState(flat, U if self.adjust or self.drift != "learned" else None, drift)

    def cleanup(self):
        """Clear the run's chain and statistics (the adapted step size and preconditioner stay readable)."""
        self._stats, self._chain, self._initial_params = _Stats.start(0, 1), None, None


class _Target(NamedTuple):
    """What :meth:`LangevinKernel.setup` derives from the model and its arguments."""

    potential_fn: object
    transforms: dict
    shapes: OrderedDict  #: unconstrained shape per site, sites sorted by name (the flat order)
    drift: object  #: a :mod:`.score` term


class _Stats(NamedTuple):
    """Step count and the post-warm-up statistics Pyro's ``MCMC`` reads."""

    warmup_steps: int
    t: int
    num_draws: int
    accept_sum: float
    mean_accept_prob: float
    divergences: list
    particle_divergences: list

    @classmethod
    def start(cls, warmup_steps, num_chains):
        return cls(warmup_steps, 0, 0, 0.0, 0.0, [], [[] for _ in range(num_chains)])

    def record(self, info):
        """The statistics after a step with :class:`~.mala.MALAInfo` ``info`` (running mean acceptance
        probability over warm-up, then restarted over the draws)."""
        t, num_draws, accept_sum = self.t + 1, self.num_draws, self.accept_sum
        if t > self.warmup_steps:
            draw = t - self.warmup_steps - 1
            if bool(info.divergent.any()):
                self.divergences.append(draw)
                for p in info.divergent.nonzero().flatten().tolist():
                    self.particle_divergences[p].append(draw)
            accept_sum += info.accepted.to(info.accept_prob.dtype).mean().item()
            num_draws = draw + 1
        n = t if t <= self.warmup_steps else num_draws
        mean = self.mean_accept_prob + (info.accept_prob.mean().item() - self.mean_accept_prob) / n
        return self._replace(t=t, num_draws=num_draws, accept_sum=accept_sum, mean_accept_prob=mean)


def _check_full_mass(full_mass):
    """``full_mass`` as ``False``, ``True`` or a tuple of tuples of site names."""
    if isinstance(full_mass, bool):
        return full_mass
    if isinstance(full_mass, (list, tuple)) and full_mass and all(
            isinstance(g, (list, tuple)) and g and all(isinstance(n, str) for n in g) for g in full_mass):
        groups = tuple(tuple(g) for g in full_mass)
        names = [n for g in groups for n in g]
        if len(names) == len(set(names)):
            return groups
    raise ValueError(f"full_mass: expected True, False or a list of tuples of distinct site names, got {full_mass!r}")


def _mass_blocks(shapes, full_mass, device):
    """``[(site names, flat indices, dense)]`` of the preconditioner's blocks: one diagonal block of every site
    (``full_mass=False``), one dense block (``True``), or each group of ``full_mass`` dense and the remaining
    sites (sorted by name) one diagonal block."""
    starts, pos = {}, 0
    for name, shape in shapes.items():
        starts[name], pos = pos, pos + int(torch.Size(shape).numel())

    def index(names):
        return torch.cat([torch.arange(starts[n], starts[n] + int(torch.Size(shapes[n]).numel()), device=device)
                          for n in names])

    if isinstance(full_mass, bool):
        return [(tuple(shapes), index(shapes), full_mass)]
    unknown = sorted({n for g in full_mass for n in g} - set(shapes))
    if unknown:
        raise ValueError(f"full_mass: sites {unknown} are not latent sites of the model ({sorted(shapes)})")
    blocks = [(g, index(g), True) for g in full_mass]
    rest = tuple(n for n in shapes if all(n not in g for g in full_mass))
    return blocks + ([(rest, index(rest), False)] if rest else [])


def _block_mask(shapes, full_mass, device):
    """Boolean ``(D, D)``: the covariance entries a ``full_mass`` preconditioner estimates."""
    D = sum(int(torch.Size(shape).numel()) for shape in shapes.values())
    mask = torch.eye(D, dtype=torch.bool, device=device)
    for _, index, dense in _mass_blocks(shapes, full_mass, device):
        if dense:
            mask[index.unsqueeze(-1), index] = True
    return mask


def _resolve_preconditioner(preconditioner, guide):
    if isinstance(preconditioner, str) and preconditioner == "auto":
        return "guide" if getattr(guide, "reference_scale", None) is not None else "adapt"
    return preconditioner


def _round_trips(z, shapes, transforms):
    """Members whose constrained values map back to their unconstrained points (to 1e-3, relative)."""
    ok = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
    if not transforms:
        return ok
    for name, u in unflatten_params(z, shapes).items():
        t = transforms.get(name)
        if t is None:
            continue
        with torch.no_grad():
            back = t(t.inv(u))
        close = torch.isclose(back, u, rtol=1e-3, atol=1e-3) | (back == u)
        ok = ok & close.reshape(z.shape[0], -1).all(-1)
    return ok


def _renamed_options(drift, exact_weight, hybrid_weight):
    """Map the old spellings (``drift="hybrid"``, ``hybrid_weight``) to the new ones, with a warning."""
    if drift == "hybrid":
        warnings.warn("LangevinKernel(drift='hybrid') is now drift='blend' (a convex combination of the exact and "
                      "the learned score; AutoLangevin's score='hybrid' is their sum)", FutureWarning, stacklevel=3)
        drift = "blend"
    if hybrid_weight is not None:
        warnings.warn("LangevinKernel(hybrid_weight=...) is now exact_weight=...", FutureWarning, stacklevel=3)
        exact_weight = hybrid_weight
    return drift, exact_weight


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
