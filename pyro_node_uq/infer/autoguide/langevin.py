"""AutoLangevin: an ensemble guide that simulates a controlled Ornstein-Uhlenbeck (Langevin-type) chain whose drift
(the score) is learned jointly with the model, trained with the path-KL ELBO.

In the flattened unconstrained latent space z of :class:`~pyro.infer.autoguide.AutoContinuous`:

    reference   r = Normal(m, S),  S = diag(s^2)  or  W W^T + diag(s^2),  L L^T = S
    chain       z_0 ~ r,   z_{k+1} = m + a (z_k - m) + b_k(z_k) + sqrt(1 - a^2) L xi_k,   a = exp(-h)
    drift       b_k(z) = (1 - a) S [ s_theta(z, tau_k) + lambda_k (grad log p(x, z) - grad log r(z)) ]
    score net   s_theta(z, tau) = S^{-1} (sqrt(diag S) * net(u, tau)),   u = (z - m) / sqrt(diag S)
    path KL     PKL = sum_k 0.5 ||L^{-1} b_k(z_k)||^2 / (1 - a^2)   >=  KL(q(z_K) || r)

The latent is emitted as ``Delta(z_K, log_density=log r(z_K) + PKL)``, so plain ``Trace_ELBO`` computes
``E[log p(x, z_K) + log|J| - log r(z_K) - PKL] <= ELBO(q) <= log p(x)``: a true lower bound for any parameters.

This class is a thin Pyro shell: the reference r (:mod:`.reference`), the drift terms (:mod:`.drift`) and the
chain itself (:mod:`.ou_chain`, a pure ``init`` / ``step`` kernel) are separate parts.
"""
import math
import operator
import warnings

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import (
    AutoContinuous,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoNormal,
)
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroParam
from pyro.nn.module import to_pyro_module_
from pyro.poutine.runtime import get_plates
from torch import nn
from torch.distributions import biject_to

from ...nn import unflatten_params
from .._pyro_compat import (
    autoguide_state,
    bare_model,
    pyro_name,
    setup_prototype,
    unconstrained_shapes,
    unpack_latent,
)
from ..log_joint import LogJoint
from . import ou_chain
from .drift import DriftSum, ExactDrift, LearnedDrift
from .reference import DiagonalReference, FullRankReference, LowRankReference
from .score_net import make_score_net

__all__ = ["AutoLangevin"]

SCORE_MODES = ("learned", "exact", "hybrid")
REFERENCES = ("auto", "diagonal", "lowrank", "full")
COLLAPSE_RATIO = 0.2  #: ensemble spread (over the reference's) below which the guide warns once
FULL_RANK_MAX_DIM = 500  #: ``reference="auto"`` is full rank up to this latent dimension, low rank above


class AutoLangevin(AutoContinuous):
    """The Langevin score-hypernetwork guide (an :class:`~pyro.infer.autoguide.AutoContinuous`).

    :param callable model: a Pyro model with continuous latent sites.
    :param int num_steps: chain length K, the guide's main cost/quality dial: the chain's cost grows linearly in
        K, and the path KL's slack (which favours under-dispersed ensembles) falls with K.  The reference carries
        the Gaussian part of the posterior (all of it with ``reference="full"``); the chain then only has to
        transport r to the posterior's non-Gaussian shape (skewed scales, funnels), and too short a chain leaves
        such marginals too narrow.  On stiff posteriors (a few data-dominated directions far narrower than the
        rest) the learned step size h stays small, so K also sets how far the ensemble can move from r.
    :param float step_size: pseudo-time step h of the OU chain (``a = exp(-h)``); learned if ``learn_step_size``.
    :param str score: ``"learned"`` (the score net only: no data-model evaluations inside the guide),
        ``"exact"`` (the data-model gradient, weighted by learned per-step ``lambda_k``; one model gradient per
        step), or ``"hybrid"`` (both).
    :param str reference: the reference law's covariance S: ``"full"`` (``L L^T``, ``L = diag(s) T`` with ``T``
        unit lower triangular, as Pyro's ``AutoMultivariateNormal``), ``"lowrank"`` (``W W^T + diag(s^2)``, rank
        ``rank``), ``"diagonal"``, or ``"auto"`` (the default: full rank up to ``FULL_RANK_MAX_DIM`` = 500 latent
        coordinates, low rank above, where a dense D x D factor grows costly).  A full-rank r matches a Gaussian
        posterior exactly with no drift at all, so the path bound is tight there and the learned drift only
        corrects what no Gaussian can express.
    :param int rank: rank of a low-rank reference (default ``round(sqrt(D))``).
    :param score_net: ``"mlp"`` (a time-conditioned MLP with a low-rank linear skip), ``"per_site"`` (one small
        net per latent site, for large latent vectors) or an ``nn.Module`` ``f(u, tau) -> (..., D)`` taking the
        whitened latent ``u = (z - m) / sqrt(diag S)``; its output must start at zero.
    :param dict score_net_kwargs: options of the built-in score nets (``hidden``, ``depth``, ``skip_rank``).
    :param callable init_loc_fn: per-site initialisation of the reference mean.
    :param float init_scale: initial reference std.
    :param init_from: a fitted ``AutoNormal`` / ``AutoDiagonalNormal`` / ``AutoLowRankMultivariateNormal`` of the
        same model: its loc and scale (and low-rank factor) are copied into r, so training starts at that fit.
    :param bool learn_step_size: learn h jointly.
    :param float exact_weight_init: initial scale of the learned per-step weights ``lambda_k`` of the exact term
        (on the schedule ``exp(-2h(K-1-k))``; ``lambda_k = exp(rho_k)`` is learned); default 1 for ``"exact"`` and
        1e-3 for ``"hybrid"``, so an untrained hybrid guide is (almost exactly) its reference r and training
        grows the exact term only where it pays for its path KL.  On stiff posteriors (a NODE with a
        small noise scale) a full-weight exact drift is far outside ULA's stable step range: its path KL explodes
        and the clipped drift is counted in :attr:`stats`; start ``"exact"`` there with a small weight (0.01).
    :param float max_drift: per-step drift clip, in whitened units x sqrt(D); clipped or non-finite drifts are
        counted in :attr:`stats` and warned about (the bound stays valid: PKL uses the applied drift).
    :param int num_quantile_samples: ensemble size of :meth:`median` and :meth:`quantiles` (antithetic draws from
        a fixed seed: both are deterministic and consistent; an untrained ``"learned"`` guide's median is its
        reference mean, i.e. the ``init_loc_fn`` values, while the exact term of ``"exact"`` (and, weakly,
        ``"hybrid"``) already moves the untrained ensemble along the model's gradient).

    **Data.** The exact and hybrid drifts evaluate the model, so the guide owns the data they condition on: the
    arguments of its first call (normally the first SVI step), or those given to :meth:`condition_on`.  Later calls
    with other arguments (``Predictive`` on test inputs, a converter given a test split) never change them.  The
    model is evaluated outside the caller's effect handlers, so the guide works under any plates (vectorised ELBO
    particles, ``Predictive(parallel=True)``) and with latents inside the model's plates.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0., 1.))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("obs", dist.Normal(mu, 1.), obs=y)
        >>> guide = AutoLangevin(model, num_steps=5, score="learned")
        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}),
        ...                      pyro.infer.Trace_ELBO(num_particles=8, vectorize_particles=True))
        >>> loss = svi.step(torch.randn(10))
        >>> guide.sample_ensemble(100, torch.randn(10))["mu"].shape
        torch.Size([100])
    """

    scale_constraint = constraints.softplus_positive

    def __init__(self, model, *, num_steps=10, step_size=0.1, score="learned", reference="auto", rank=None,
                 score_net="mlp", score_net_kwargs=None, init_loc_fn=init_to_median, init_scale=0.1, init_from=None,
                 learn_step_size=True, exact_weight_init=None, max_drift=10.0, num_quantile_samples=1000):
        if score not in SCORE_MODES:
            raise ValueError(f"score must be one of {SCORE_MODES}, got {score!r}")
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
        if not (isinstance(num_steps, int) and num_steps >= 1):
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        for name, value in (("step_size", step_size), ("init_scale", init_scale), ("max_drift", max_drift)):
            if not float(value) > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not (isinstance(num_quantile_samples, int) and num_quantile_samples >= 2):
            raise ValueError(f"num_quantile_samples must be an int >= 2, got {num_quantile_samples!r}")
        if rank is not None and not (isinstance(rank, int) and rank > 0):
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if init_from is not None and not isinstance(init_from, (AutoNormal, AutoDiagonalNormal,
                                                                AutoLowRankMultivariateNormal)):
            raise TypeError("init_from must be a fitted AutoNormal, AutoDiagonalNormal or "
                            f"AutoLowRankMultivariateNormal, got {type(init_from).__name__}")
        self.num_steps, self.score_mode, self.reference, self.rank = num_steps, score, reference, rank
        self._step_size, self._init_scale, self.learn_step_size = float(step_size), float(init_scale), learn_step_size
        # in a tuple: a module given as the net is set up (and registered) by _setup_prototype, not here
        self._score_net_spec, self._score_net_kwargs = (score_net,), dict(score_net_kwargs or {})
        self.max_drift, self.num_quantile_samples = float(max_drift), int(num_quantile_samples)
        if exact_weight_init is None:
            exact_weight_init = 1.0 if score == "exact" else 1e-3
        if not float(exact_weight_init) > 0:
            raise ValueError(f"exact_weight_init must be positive, got {exact_weight_init}")
        self._exact_weight_init = float(exact_weight_init)
        super().__init__(model, init_loc_fn=init_loc_fn)
        self._data, self._log_joint, self._log_joint_of, self._last_info = None, None, None, None
        self._init_from = None if init_from is None else (init_from,)  # a tuple: not registered as a sub-guide

    # ------------------------------------------------------------------ parameters
    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if site["fn"].support.is_discrete:
                raise ValueError(f"AutoLangevin: site {name!r} is discrete ({type(site['fn']).__name__}); the "
                                 "Langevin chain needs continuous latents.  Enumerate it out "
                                 "(TraceEnum_ELBO with infer={'enumerate': 'parallel'} on the site, and hide it "
                                 "from this guide with poutine.block) or marginalise it in the model")
        if self._data is None:
            self._data = (tuple(args), dict(kwargs))
        # the batch dims of the latent sites (their plates), to the right of a batch of members in _constrain
        self._latent_nesting = max((site["value"].dim() - site["fn"].event_dim
                                    for _, site in self.prototype_trace.iter_stochastic_nodes()), default=0)
        D = self.latent_dim
        if self.reference == "auto":
            self.reference = "full" if D <= FULL_RANK_MAX_DIM else self._auto_large_reference
        loc = self._init_loc()
        self.loc = nn.Parameter(loc)
        # loc is (D,), or (M, D) for a guide whose reference has M components (its _init_loc says)
        self.scale = PyroParam(loc.new_full(loc.shape, self._init_scale), constraint=self.scale_constraint)
        if self.reference == "lowrank":
            self.rank = self.rank or max(1, round(D ** 0.5))
            # relative to the scale, as in Pyro's AutoLowRankMultivariateNormal: W = diag(s) F.  Adam's steps on F
            # are then relative to the posterior's scale (an absolute W moved 50% per step where s ~ 0.01 and
            # training from a low-rank VI fit of a NODE blew up).  F starts at rows of norm ~0.1 (1% of the
            # variance): small, yet large enough for the gradient of W W^T (linear in F) to grow it
            self.cov_factor = nn.Parameter(loc.new_empty(D, self.rank).normal_(0, 0.1 / self.rank ** 0.5))
        elif self.reference == "full":  # L = diag(s) T, T unit lower triangular (Pyro's AutoMultivariateNormal)
            self.scale_tril = PyroParam(torch.eye(D, dtype=loc.dtype, device=loc.device).expand(
                                            loc.shape[:-1] + (D, D)).clone(),
                                        constraint=constraints.unit_lower_cholesky)
        h = torch.tensor(math.log(self._step_size), dtype=loc.dtype, device=loc.device)
        if self.learn_step_size:
            self.log_step_size = nn.Parameter(h)
        else:
            self.register_buffer("log_step_size", h)
        if self.score_mode != "exact":
            sizes = {name: int(torch.Size(shape).numel()) for name, shape in unconstrained_shapes(self).items()}
            net = make_score_net(self._score_net_spec[0], D, sizes, **self._score_net_kwargs).to(device=loc.device,
                                                                                       dtype=loc.dtype)
            to_pyro_module_(net)
            self.score_net = net
        if self.score_mode != "learned":
            K, hval = self.num_steps, self._step_size
            # lambda_k on the OU decay exp(-2h(K-1-k)) (weak early, full at the last step), times exact_weight_init
            lam = torch.tensor([math.exp(-2 * hval * (K - 1 - k)) for k in range(K)], dtype=loc.dtype,
                               device=loc.device)
            # lambda_k = exp(rho_k): Adam's steps on rho are relative, so a weight started tiny stays on its scale
            self.exact_log_weight = nn.Parameter(torch.log(lam * self._exact_weight_init))
        if self._init_from is not None:
            self._copy_reference(self._init_from[0])
            self._init_from = None

    def _copy_reference(self, other):
        """Copy loc / scale (/ low-rank factor) of a fitted Gaussian guide of the same model into r."""
        with torch.no_grad():
            if isinstance(other, AutoNormal):
                locs, scales = [], []
                for name in unconstrained_shapes(self):
                    try:
                        loc, scale = operator.attrgetter(name)(other.locs), operator.attrgetter(name)(other.scales)
                    except AttributeError as e:
                        raise ValueError(f"init_from: the AutoNormal guide has no site {name!r}; "
                                         "fit it on the same model (and call it once) first") from e
                    locs.append(loc.detach().reshape(-1))
                    scales.append(scale.detach().reshape(-1))
                loc, scale, factor = torch.cat(locs), torch.cat(scales), None
            else:
                if getattr(other, "latent_dim", None) != self.latent_dim:
                    raise ValueError(f"init_from: latent dimension {getattr(other, 'latent_dim', None)} differs from "
                                     f"this guide's {self.latent_dim}; fit it on the same model first")
                loc, scale = other.loc.detach(), other.scale.detach()
                factor = None
                if isinstance(other, AutoLowRankMultivariateNormal):
                    factor = other.cov_factor.detach()  # relative to scale, like ours
            if loc.shape != (self.latent_dim,):
                raise ValueError(f"init_from: expected {self.latent_dim} latent coordinates, got {tuple(loc.shape)}")
            self.loc.data.copy_(loc)
            if self.reference == "full":  # the fit's covariance, factorised as diag(s) T
                cov = torch.diag(scale.pow(2))
                if factor is not None:
                    W = scale.unsqueeze(-1) * factor
                    cov = cov + W @ W.T
                L = torch.linalg.cholesky(cov)
                scale = L.diagonal()
                self.scale_tril = L / scale.unsqueeze(-1)
            elif factor is not None and self.reference == "diagonal":
                scale = scale * (1 + factor.pow(2).sum(-1)).sqrt()
            if self.reference == "lowrank":
                if factor is not None:  # the copied factor (a lower rank keeps its leading columns)
                    r = min(self.rank, factor.shape[-1])
                    self.cov_factor.data.zero_()
                    self.cov_factor.data[:, :r] = factor[:, :r]
                else:  # a diagonal fit: keep its marginal variances exactly, s^2 (1 + |F_i|^2) = scale^2
                    scale = scale / (1 + self.cov_factor.detach().pow(2).sum(-1)).sqrt()
            self.scale = scale.clone()

    def __getstate__(self):
        # Pyro's AutoGuide drops the model when pickled; the exact and hybrid drifts evaluate it, so keep it
        # (the model must then be picklable: a NODEModel or a module-level function is)
        state = autoguide_state(self, super().__getstate__, with_model=True)
        state["_log_joint"] = state["_log_joint_of"] = None
        return state

    def load_state_dict(self, state_dict, strict=True):
        if self.prototype_trace is None and len(state_dict):
            raise RuntimeError(f"{type(self).__name__}.load_state_dict: this guide has no parameters yet (they are "
                               "created on its first call); call it once with the model's arguments, guide(*args), "
                               "then load the state")
        return super().load_state_dict(state_dict, strict=strict)

    # ------------------------------------------------------------------ the data
    def condition_on(self, *args, **kwargs):
        """Set the model arguments (the data) the exact and hybrid drifts condition on.

        By default these are the arguments of the guide's first call.  Call this to continue training on other
        data, or after building the guide on other arguments.  Returns the guide.
        """
        self._data, self._log_joint = (tuple(args), dict(kwargs)), None
        return self

    @property
    def conditioning_data(self):
        """``(args, kwargs)`` the exact drift conditions on (``None`` before the first call)."""
        return self._data

    def log_joint(self, z):
        """``log p(data, z) + log|J|`` at flat unconstrained points ``z`` ``(P, D)`` (this guide's site order),
        given :attr:`conditioning_data`; evaluated outside the caller's effect handlers.  Returns ``(P,)``.

        A model with ``with_divergence`` (every :class:`~pyro_node_uq.models.ProcessModel`) is evaluated with
        diverging solves rejected: such a member scores ``-inf`` (its exact drift is then zero, and counted in
        :attr:`stats`) instead of aborting the ensemble."""
        if self._data is None:
            raise RuntimeError(f"{type(self).__name__}: no data to condition the exact drift on; call the guide once "
                               "with the model's arguments or use condition_on(*args, **kwargs)")
        if self._log_joint is None or self._log_joint_of is not self.model:  # built, or the model was replaced
            args, kwargs = self._data
            rejecting = getattr(bare_model(self.model), "with_divergence", None)
            model = rejecting("reject") if rejecting is not None else self.model
            self._log_joint = LogJoint.from_model(model, args, kwargs, latent_sites=unconstrained_shapes(self))
            self._log_joint_of = self.model
        return self._log_joint(unflatten_params(z, unconstrained_shapes(self)))

    # ------------------------------------------------------------------ the reference r and the drift
    @property
    def step_size(self):
        return self.log_step_size.exp()

    @property
    def reference_scale(self):
        """Marginal std of the reference r, ``sqrt(diag S)`` (detached): the diagonal preconditioner."""
        return self.reference_law().marginal_std().detach()

    def warm_start_lr_scales(self):
        """Per-parameter learning-rate multipliers for a guide whose reference starts at a fit (a MAP point, an
        AutoNormal), by param-store name: pass them as ``fit_svi(..., lr_scales=...)``.

        Adam moves every coordinate of a parameter by about ``lr`` per step (exactly ``lr`` at its first step,
        whatever the gradient's size).  At a fit of a stiff posterior (a NODE whose noise scale is small) that
        throws the ensemble out of the fit's basin: its narrowest directions are far below ``lr`` wide.  So the
        reference mean moves in units of the reference's median initial std (``lr`` x that std per coordinate),
        and each of the ``D (D - 1) / 2`` off-diagonal entries of a full-rank factor by ``lr / sqrt(D)``, so a row
        of the factor moves by about ``lr``, as the scale does.  The score net and the step size keep ``lr``.
        A guide that starts far from the posterior (the model's initialisation) should keep plain ``lr``.

        :returns: dict param-store name -> multiplier (the guide must have been called once).
        """
        if self.prototype_trace is None:
            raise RuntimeError(f"{type(self).__name__}.warm_start_lr_scales: the guide has no parameters yet; call "
                               "it once with the model's arguments first")
        name = pyro_name(self)
        scales = {f"{name}.loc": float(self.reference_scale.median())}
        if self.reference == "full":
            scales[f"{name}.scale_tril"] = 1.0 / math.sqrt(self.latent_dim)
        return scales

    @property
    def factor(self):
        """The low-rank factor ``W = diag(s) F`` of a low-rank reference's covariance ``S = W W^T + diag(s^2)``
        (``F``: the parameter ``cov_factor``, relative to the scale as in Pyro's AutoLowRankMultivariateNormal)."""
        return LowRankReference(self.loc, self.scale, self.cov_factor).factor

    def reference_law(self):
        """The reference r as a :mod:`~pyro_node_uq.infer.autoguide.reference` object of the current parameters."""
        if self.reference == "lowrank":
            return LowRankReference(self.loc, self.scale, self.cov_factor)
        if self.reference == "full":
            return FullRankReference.from_scale(self.loc, self.scale, self.scale_tril)
        return DiagonalReference(self.loc, self.scale)

    def drift(self):
        """The chain's drift term for this guide's ``score`` mode (a :mod:`~pyro_node_uq.infer.autoguide.drift`
        object of the current parameters)."""
        terms = []
        if self.score_mode != "exact":
            terms.append(LearnedDrift(self.score_net))
        if self.score_mode != "learned":
            terms.append(ExactDrift(self._exact_log_density, self.exact_log_weight.exp()))
        return terms[0] if len(terms) == 1 else DriftSum(*terms)

    def exact_score(self, z):
        """``(grad_z log p(data, z), ok)`` at unconstrained points ``z`` ``batch + (D,)``: the gradient is zero where
        ``ok`` is False (a log density or gradient that is not finite, e.g. a diverging NODE solve)."""
        return ExactDrift(self._exact_log_density, None).score(z)

    def _exact_log_density(self, z):
        if torch.jit.is_tracing():
            raise NotImplementedError(
                f"AutoLangevin(score={self.score_mode!r}): the exact drift differentiates the model inside the guide "
                "(torch.autograd.grad), which torch.jit.trace cannot record; use Trace_ELBO, or score='learned' "
                "with JitTrace_ELBO")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # counted in stats and warned about once per chain
            return self.log_joint(z)

    # ------------------------------------------------------------------ the chain
    def run_chain(self, batch_shape, noise=None):
        """Simulate the controlled chain for a batch of independent particles.

        :param torch.Size batch_shape: the particles' batch shape.
        :param callable noise: ``noise(shape) -> standard normal tensor`` (default ``torch.randn`` on the guide's
            dtype and device).
        :returns: ``(z_K, log r(z_K), PKL, infos)`` with the per-step :class:`~.ou_chain.ChainInfo` tuples.
        """
        ref, drift = self.reference_law(), self.drift()
        shape = self._chain_shape(torch.Size(batch_shape)) + (ref.noise_dim,)
        if noise is None:
            like = ref.loc  # read once: every read of a guide parameter is a pyro.param statement
            noise = lambda s: torch.randn(s, dtype=like.dtype, device=like.device)
        bound = self.max_drift * math.sqrt(self.latent_dim)
        state, infos = ou_chain.init(ref, noise(shape)), []
        h = self.step_size
        coefs = ou_chain.coefficients(h)
        for k in range(self.num_steps):
            state, info = ou_chain.step(state, noise(shape), k=k, num_steps=self.num_steps, reference=ref,
                                        drift=drift, step_size=h, bound=bound, coefs=coefs)
            infos.append(info)
        z, path_kl = self._particles(state, torch.Size(batch_shape))
        members = z.detach().reshape(-1, z.shape[-1])
        spread = None  # the members' std over the reference's, averaged over coordinates (8 members or more)
        if members.shape[0] >= 8 and not torch.jit.is_tracing():
            spread = float((members.std(0) / ref.marginal_std().detach()).mean())
        self._last_info = (ou_chain.ChainInfo(*(torch.stack([getattr(i, f) for i in infos]).detach()
                                                for f in ou_chain.ChainInfo._fields)), float(h.detach()), spread)
        if not torch.jit.is_tracing():
            rejected = int(self._last_info[0].rejected.sum())
            if rejected:
                warnings.warn(f"AutoLangevin: {rejected} non-finite drifts (of {self._last_info[0].rejected.numel()} "
                              "particle steps) were set to zero; the model's log density or its gradient was not "
                              "finite there (e.g. a diverging ODE solve)", RuntimeWarning)
            if spread is not None and spread < COLLAPSE_RATIO and not getattr(self, "_collapse_warned", False):
                self._collapse_warned = True
                warnings.warn(f"AutoLangevin: the ensemble collapsed toward its mean (its spread is {spread:.3f} of "
                              "the reference's, averaged over coordinates): the drift, not the reference r, is "
                              "concentrating the members, at a high path KL.  Start r closer to the posterior "
                              "(init_from a fitted AutoNormal, a smaller init_scale) or lower the learning rate; "
                              "guide.stats['spread_ratio'] tracks it (warned once)", RuntimeWarning)
        return z, self._reference_log_prob(ref, z), path_kl, infos

    # hooks of a reference with several components (AutoLangevinMixture): here the chain's batch is the particles'
    _auto_large_reference = "lowrank"  #: ``reference="auto"`` above FULL_RANK_MAX_DIM coordinates

    def _chain_shape(self, batch_shape):
        """The chain's batch shape for particles of ``batch_shape``."""
        return batch_shape

    def _particles(self, state, batch_shape):
        """``(z_K, PKL)`` of the particles ``batch_shape`` from the chain's final state."""
        return state.z, state.path_kl

    def _reference_log_prob(self, reference, z):
        """``log r(z)`` at the particles' final states."""
        return reference.distribution().log_prob(z)

    def _fixed_ensemble_size(self):
        """Members of :meth:`median`'s fixed antithetic ensemble: ``num_quantile_samples`` rounded up to even."""
        return self.num_quantile_samples + self.num_quantile_samples % 2

    @property
    def stats(self):
        """Summary of the last chain run: ``step_size``, ``clipped_fraction``, ``nonfinite_drifts`` (rejected
        particle steps), ``mean_path_kl`` (computed on access from the last run's info) and ``spread_ratio`` (the
        members' std over the reference's marginal std, averaged over coordinates; ``None`` below 8 members): far
        below 1 the drift, not r, concentrates the ensemble (a warning is issued once below ``COLLAPSE_RATIO``)."""
        if self._last_info is None:
            return {}
        info, h, spread = self._last_info
        return {"step_size": h, "clipped_fraction": int(info.clipped.sum()) / max(info.clipped.numel(), 1),
                "nonfinite_drifts": int(info.rejected.sum()), "mean_path_kl": float(info.path_kl.sum(0).mean()),
                "spread_ratio": spread}

    # ------------------------------------------------------------------ the guide
    @staticmethod
    def _plate_batch_shape():
        """The batch shape required by the enclosing vectorised plates (particles, predictive samples)."""
        shape = []
        for frame in get_plates():
            if frame.vectorized and frame.dim is not None:
                need = -frame.dim
                shape = [1] * (need - len(shape)) + shape if need > len(shape) else shape
                shape[len(shape) + frame.dim] = frame.size
        return torch.Size(shape)

    def _loc_scale(self, *args, **kwargs):
        """``(loc, scale)`` of the reference r (its mean and marginal std), as Pyro's Gaussian autoguides report."""
        return self.loc, self.reference_law().marginal_std()

    def get_posterior(self, *args, **kwargs):
        raise NotImplementedError("AutoLangevin's posterior has no closed form; use sample_ensemble, median or "
                                  "quantiles (Monte Carlo)")

    def sample_latent(self, *args, **kwargs):
        """Run the chain for every particle of the enclosing plates and emit ``Delta(z_K, log r(z_K) + PKL)``."""
        z, log_r, pkl, _ = self.run_chain(self._plate_batch_shape())
        return pyro.sample(f"_{pyro_name(self)}_latent", dist.Delta(z, log_density=log_r + pkl, event_dim=1),
                           infer={"is_auxiliary": True})

    def _ensemble_latent(self, num_particles, args, kwargs, noise=None):
        if self.prototype_trace is None:
            setup_prototype(self, *args, **kwargs)
        with torch.no_grad():
            z, _, _, _ = self.run_chain(torch.Size((num_particles,)), noise)
        return z

    def _fixed_ensemble(self, args, kwargs):
        """``num_quantile_samples`` (rounded up to even) antithetic members from a fixed seed: deterministic."""
        if self.prototype_trace is None:
            setup_prototype(self, *args, **kwargs)
        gen = torch.Generator(device=self.loc.device).manual_seed(0)

        def antithetic(shape):
            half = torch.randn((shape[0] + 1) // 2, *shape[1:], generator=gen, dtype=self.loc.dtype,
                               device=self.loc.device)
            return torch.cat([half, -half])

        n = self._fixed_ensemble_size()
        return self._ensemble_latent(n, args, kwargs, antithetic)

    def _constrain(self, latent):
        # Pyro's _unpack_latent aligns the latent's batch dims to the left of the model's plates: pad with ones so
        # that a batch of members ``(P, D)`` also works for latents inside plates
        if latent.dim() > 1:
            latent = latent.reshape(latent.shape[:-1] + (1,) * self._latent_nesting + latent.shape[-1:])
        return {site["name"]: biject_to(site["fn"].support)(value)
                for site, value in unpack_latent(self, latent)}

    def sample_ensemble(self, num_particles, *args, **kwargs):
        """Draw ``num_particles`` fresh, independent ensemble members (constrained values, leading dim P).

        ``*args, **kwargs`` set up an unused guide; the drift always conditions on :attr:`conditioning_data`.
        """
        z = self._ensemble_latent(num_particles, args, kwargs)
        return {name: value.reshape((num_particles,) + self.prototype_trace.nodes[name]["value"].shape)
                for name, value in self._constrain(z).items()}

    def median(self, *args, **kwargs):
        """Posterior median of each site: the coordinate-wise median of a fixed antithetic ensemble of
        ``num_quantile_samples`` members in unconstrained space, mapped to the constrained space (the maps are
        monotone).  Deterministic, equal to ``quantiles([0.5])``."""
        return {k: v[0] for k, v in self.quantiles([0.5], *args, **kwargs).items()}

    def quantiles(self, quantiles, *args, **kwargs):
        """Posterior quantiles of each site from the fixed antithetic ensemble of :meth:`median`.

        :param quantiles: a list of levels in (0, 1).
        :returns: dict site -> tensor with a leading dim of ``len(quantiles)``.
        """
        q = torch.as_tensor(quantiles, dtype=torch.float64)
        if q.dim() != 1 or not len(q) or ((q <= 0) | (q >= 1)).any():
            raise ValueError(f"quantiles must be a list of levels in (0, 1), got {quantiles}")
        z = self._fixed_ensemble(args, kwargs)
        latents = torch.quantile(z, q.to(z), dim=0)
        result = {}
        for latent in latents:
            for name, value in self._constrain(latent).items():
                result.setdefault(name, []).append(value)
        return {k: torch.stack(v) for k, v in result.items()}

    def score(self, z):
        """The learned estimate of ``grad_z log p(z | data)`` at the last chain step: ``grad log r(z) +
        s_theta(z, tau_{K-1})`` (``score="learned"``/``"hybrid"``); used by :class:`LangevinKernel`.

        :param torch.Tensor z: unconstrained latents ``(..., D)`` in this guide's site order.
        """
        if self.score_mode == "exact":
            raise ValueError("score(): a guide with score='exact' has no learned score; use drift='exact'")
        ref = self.reference_law()
        c, _ = LearnedDrift(self.score_net)(z, self.num_steps - 1, self.num_steps, ref, None)
        return ref.solve(c - (z - self.loc))
