"""AutoLangevin: an ensemble guide that simulates a controlled Ornstein-Uhlenbeck (Langevin-type) chain whose drift
(the score) is learned jointly with the model, trained with the path-KL ELBO (DESIGN.md section 2).

In the flattened unconstrained latent space z of :class:`~pyro.infer.autoguide.AutoContinuous`:

    reference   r = Normal(m, S),  S = diag(s^2)  or  W W^T + diag(s^2),  L L^T = S
    chain       z_0 ~ r,   z_{k+1} = m + a (z_k - m) + b_k(z_k) + sqrt(1 - a^2) L xi_k,   a = exp(-h)
    drift       b_k(z) = (1 - a) S [ s_theta(z, tau_k) + lambda_k (grad log p(x, z) - grad log r(z)) ]
    score net   s_theta(z, tau) = S^{-1} (sqrt(diag S) * net(u, tau)),   u = (z - m) / sqrt(diag S)
    path KL     PKL = sum_k 0.5 ||L^{-1} b_k(z_k)||^2 / (1 - a^2)   >=  KL(q(z_K) || r)

The latent is emitted as ``Delta(z_K, log_density=log r(z_K) + PKL)``, so plain ``Trace_ELBO`` computes
``E[log p(x, z_K) + log|J| - log r(z_K) - PKL] <= ELBO(q) <= log p(x)``: a true lower bound for any parameters.
"""
import math
import warnings

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.infer.autoguide import AutoContinuous, AutoDiagonalNormal, AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroParam
from pyro.nn.module import to_pyro_module_
from pyro.poutine.runtime import get_plates
from torch import nn
from pyro.distributions import constraints
from torch.distributions import biject_to

from ...distributions import divergence_policy
from .score_net import make_score_net

__all__ = ["AutoLangevin"]

SCORE_MODES = ("learned", "exact", "hybrid")


class AutoLangevin(AutoContinuous):
    """The Langevin score-hypernetwork guide (an :class:`~pyro.infer.autoguide.AutoContinuous`).

    :param callable model: a Pyro model with continuous latent sites.
    :param int num_steps: chain length K.  On stiff posteriors (a few data-dominated directions far narrower than
        the rest) the learned step size h stays small, so K sets how far the ensemble can move from its reference,
        and the path KL's slack (which favours under-dispersed ensembles) falls with K.  On a correlated Bayesian
        linear regression (d = 10, diagonal reference, hybrid score) the covariance error of the ensemble is
        0.33 / 0.25 / 0.12 at K = 10 / 20 / 40; a low-rank reference (rank 9) reaches 0.15 at K = 10.
    :param float step_size: pseudo-time step h of the OU chain (``a = exp(-h)``); learned if ``learn_step_size``.
    :param str score: ``"learned"`` (the score net only: no data-model evaluations inside the guide),
        ``"exact"`` (the data-model gradient, weighted by learned per-step ``lambda_k``; one model gradient per
        step), or ``"hybrid"`` (both).
    :param str reference: ``"diagonal"`` or ``"lowrank"`` (``W W^T + diag(s^2)``, rank ``rank``).
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
    :param int num_quantile_samples: ensemble size of the Monte Carlo :meth:`median` and :meth:`quantiles`.

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

    def __init__(self, model, *, num_steps=10, step_size=0.1, score="learned", reference="diagonal", rank=None,
                 score_net="mlp", score_net_kwargs=None, init_loc_fn=init_to_median, init_scale=0.1, init_from=None,
                 learn_step_size=True, exact_weight_init=None, max_drift=10.0, num_quantile_samples=1000):
        if score not in SCORE_MODES:
            raise ValueError(f"score must be one of {SCORE_MODES}, got {score!r}")
        if reference not in ("diagonal", "lowrank"):
            raise ValueError(f"reference must be 'diagonal' or 'lowrank', got {reference!r}")
        if not (isinstance(num_steps, int) and num_steps >= 1):
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        for name, value in (("step_size", step_size), ("init_scale", init_scale), ("max_drift", max_drift)):
            if not float(value) > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if rank is not None and not (isinstance(rank, int) and rank > 0):
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if init_from is not None and not isinstance(init_from, (AutoNormal, AutoDiagonalNormal,
                                                                AutoLowRankMultivariateNormal)):
            raise TypeError("init_from must be a fitted AutoNormal, AutoDiagonalNormal or "
                            f"AutoLowRankMultivariateNormal, got {type(init_from).__name__}")
        self.num_steps, self.score_mode, self.reference, self.rank = num_steps, score, reference, rank
        self._step_size, self._init_scale, self.learn_step_size = float(step_size), float(init_scale), learn_step_size
        self._score_net_spec, self._score_net_kwargs = score_net, dict(score_net_kwargs or {})
        self.max_drift, self.num_quantile_samples = float(max_drift), int(num_quantile_samples)
        if exact_weight_init is None:
            exact_weight_init = 1.0 if score == "exact" else 1e-3
        if not float(exact_weight_init) > 0:
            raise ValueError(f"exact_weight_init must be positive, got {exact_weight_init}")
        self._exact_weight_init = float(exact_weight_init)
        super().__init__(model, init_loc_fn=init_loc_fn)
        self.stats = {}
        self._init_from = None if init_from is None else (init_from,)  # a tuple: not registered as a sub-guide

    # ------------------------------------------------------------------ parameters
    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        D = self.latent_dim
        full = poutine.block(poutine.trace(self.model).get_trace)(*args, **kwargs)
        frames = [f for site in full.nodes.values() if site["type"] == "sample"
                  for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None]
        self._max_plate_nesting = max([-f.dim for f in frames] or [0])
        # the model's plate at its deepest dim, reused by the nesting marker (a private one if it subsamples)
        deepest = [f for f in frames if -f.dim == self._max_plate_nesting]
        self._marker_plate = (f"_{self._pyro_name}_plates", 1)
        if deepest and deepest[0].full_size in (None, deepest[0].size):
            self._marker_plate = (deepest[0].name, deepest[0].size)
        loc = self._init_loc()
        self.loc = nn.Parameter(loc)
        self.scale = PyroParam(loc.new_full((D,), self._init_scale), constraint=self.scale_constraint)
        if self.reference == "lowrank":
            self.rank = self.rank or max(1, int(round(D ** 0.5)))
            # relative to the scale, as in Pyro's AutoLowRankMultivariateNormal: W = diag(s) F.  Adam's steps on F
            # are then relative to the posterior's scale (an absolute W moved 50% per step where s ~ 0.01 and
            # training from a low-rank VI fit of a NODE blew up).  F starts at rows of norm ~0.1 (1% of the
            # variance): small, yet large enough for the gradient of W W^T (linear in F) to grow it
            self.cov_factor = nn.Parameter(loc.new_empty(D, self.rank).normal_(0, 0.1 / self.rank ** 0.5))
        h = torch.tensor(math.log(self._step_size), dtype=loc.dtype)
        if self.learn_step_size:
            self.log_step_size = nn.Parameter(h)
        else:
            self.register_buffer("log_step_size", h)
        if self.score_mode != "exact":
            sizes = {name: int(torch.Size(shape).numel()) for name, shape in self._unconstrained_shapes.items()}
            net = make_score_net(self._score_net_spec, D, sizes, **self._score_net_kwargs).to(loc.dtype)
            to_pyro_module_(net)
            self.score_net = net
        if self.score_mode != "learned":
            K, hval = self.num_steps, self._step_size
            # lambda_k on the OU decay exp(-2h(K-1-k)) (weak early, full at the last step), times exact_weight_init
            lam = torch.tensor([math.exp(-2 * hval * (K - 1 - k)) for k in range(K)], dtype=loc.dtype)
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
                for name, shape in self._unconstrained_shapes.items():
                    try:
                        loc, scale = other._get_loc_and_scale(name)
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
            if factor is not None and self.reference == "diagonal":
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
        model = self._model
        state = super().__getstate__()
        self._model = model
        state["_model"] = model
        return state

    # ------------------------------------------------------------------ the reference r
    @property
    def step_size(self):
        return self.log_step_size.exp()

    @property
    def reference_scale(self):
        """Marginal std of the reference r, ``sqrt(diag S)`` (detached): the diagonal preconditioner."""
        return self._marginal_std().detach()

    @property
    def factor(self):
        """The low-rank factor ``W = diag(s) F`` of a low-rank reference's covariance ``S = W W^T + diag(s^2)``
        (``F``: the parameter ``cov_factor``, relative to the scale as in Pyro's AutoLowRankMultivariateNormal)."""
        return self.scale.unsqueeze(-1) * self.cov_factor

    def _marginal_std(self):
        var = self.scale.pow(2)
        if self.reference == "lowrank":
            var = var + self.factor.pow(2).sum(-1)
        return var.sqrt()

    def _reference(self):
        if self.reference == "lowrank":
            return dist.LowRankMultivariateNormal(self.loc, self.factor, self.scale.pow(2))
        return dist.Normal(self.loc, self.scale).to_event(1)

    def _apply_S(self, v):
        out = self.scale.pow(2) * v
        if self.reference == "lowrank":
            W = self.factor
            out = out + (v @ W) @ W.T
        return out

    def _solve_S(self, v):
        """``S^{-1} v`` (Woodbury for the low-rank reference)."""
        dinv = self.scale.pow(-2)
        out = dinv * v
        if self.reference == "lowrank":
            W = self.factor
            cap = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device) + (W.T * dinv) @ W
            rhs = (out @ W).unsqueeze(-1)
            out = out - dinv * (W @ torch.linalg.solve(cap, rhs)).squeeze(-1)
        return out

    def _noise(self, batch_shape):
        """A draw of ``L xi`` with covariance S."""
        eps = torch.randn(batch_shape + self.loc.shape, dtype=self.loc.dtype, device=self.loc.device)
        out = self.scale * eps
        if self.reference == "lowrank":
            e2 = torch.randn(batch_shape + (self.rank,), dtype=self.loc.dtype, device=self.loc.device)
            out = out + e2 @ self.factor.T
        return out

    # ------------------------------------------------------------------ the data-model gradient
    def _log_joint(self, z, args, kwargs):
        """log p(x, z) + log|J| for a batch of unconstrained latents ``z`` (``batch + (D,)``).

        The batch is flattened into one dim left of every model plate, whatever plates the guide runs under
        (``Predictive`` guesses a guide's plate nesting from the guide alone).
        """
        batch = z.shape[:-1]
        z = z.reshape((-1,) + (1,) * self._max_plate_nesting + z.shape[-1:])
        values, logp = {}, z.new_zeros(())
        for site, unconstrained in self._unpack_latent(z):
            transform = biject_to(site["fn"].support)
            value = transform(unconstrained)
            ladj = transform.log_abs_det_jacobian(unconstrained, value)
            logp = logp + sum_rightmost(ladj, ladj.dim() - value.dim() + site["fn"].event_dim)
            values[site["name"]] = value
        with poutine.block():
            trace = poutine.trace(poutine.condition(self.model, values)).get_trace(*args, **kwargs)
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] != "sample":
                continue
            lp = site["log_prob"]
            for frame in site["cond_indep_stack"]:
                if frame.vectorized and frame.dim is not None and lp.dim() >= -frame.dim:
                    lp = lp.sum(frame.dim, keepdim=True)
            logp = logp + lp
        return logp.expand(z.shape[:-1]).reshape(batch)

    def _exact_score(self, z, args, kwargs):
        """``(grad_z log p(x, z), ok)``: the gradient is zero where ``ok`` is False, i.e. for members whose log joint
        or gradient is not finite (a NODE solve that diverged at an intermediate chain state is rejected there, not
        raised; the chain zeroes and counts that member's drift).  Zeros, not NaN: a NaN kept out of the forward
        pass by ``torch.where`` would still reach the parameters' gradients (0 * NaN) in the backward pass."""
        with torch.enable_grad(), divergence_policy("reject"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # counted in stats and warned about once per chain
            leaf = z.detach().requires_grad_()
            logp = self._log_joint(leaf, args, kwargs)
            (grad,) = torch.autograd.grad(logp.sum(), leaf)
        ok = torch.isfinite(logp) & torch.isfinite(grad).all(-1)
        return torch.where(ok.unsqueeze(-1), grad, torch.zeros_like(grad)), ok

    def _exact_direction(self, z, m, cap, args, kwargs):
        """``(e, ok)`` with ``e = grad log p(x, z) - grad log r(z)`` (detached), zero where ``ok`` is False.

        The whitened size ``sqrt(e^T S e)`` of each member is capped at ``1e3 * cap`` before ``e`` meets any
        parameter (the drift clip later enforces the real bound): a NODE gradient can be finite yet so large that
        ``lambda S e`` overflows in float32, and an inf in the forward pass turns into ``0 * inf = NaN`` in the
        parameters' gradients even where ``torch.where`` discards it.
        """
        grad, ok = self._exact_score(z, args, kwargs)
        with torch.no_grad():
            e = grad + self._solve_S(z - m)
            ok = ok & torch.isfinite(e).all(-1)
            e = torch.where(ok.unsqueeze(-1), e, torch.zeros_like(e))
            peak = e.abs().amax(-1, keepdim=True).clamp(min=torch.finfo(e.dtype).tiny)
            unit = e / peak  # entries in [-1, 1]: S unit cannot overflow
            size = peak.squeeze(-1) * (unit * self._apply_S(unit)).sum(-1).clamp(min=0).sqrt()
            e = unit * torch.minimum(peak, peak * (1e3 * float(cap) / size.clamp(min=1e-30)).unsqueeze(-1))
        return e, ok

    # ------------------------------------------------------------------ the chain
    def _run_chain(self, batch_shape, args, kwargs):
        """Simulate the controlled chain for a batch of independent particles; returns ``z_K, log r(z_K), PKL``."""
        D, K = self.latent_dim, self.num_steps
        m, h = self.loc, self.step_size
        a = torch.exp(-h)
        one_minus_a, one_minus_a2 = -torch.expm1(-h), -torch.expm1(-2 * h)
        std = self._marginal_std()
        ref = self._reference()
        z = ref.rsample(batch_shape)
        pkl = z.new_zeros(batch_shape)
        lam = self.exact_log_weight.exp() if self.score_mode != "learned" else None
        clipped = nonfinite = 0
        bound = self.max_drift * math.sqrt(D)
        for k in range(K):
            tau = torch.tensor(k / K, dtype=z.dtype, device=z.device)
            b, ok = z.new_zeros(()), True
            if self.score_mode != "exact":
                # S s_theta with s_theta = S^{-1} (std * net): the net's output is preconditioned by the marginal std
                # only (exactly S for a diagonal reference); a low-rank S would amplify it along its correlated
                # directions by up to D and make training unstable
                b = std * self.score_net((z - m) / std, tau)
            if self.score_mode != "learned":
                e, ok = self._exact_direction(z, m, bound / one_minus_a.detach(), args, kwargs)
                b = b + lam[k] * self._apply_S(e)
            b = one_minus_a * b.expand(z.shape)
            mahal = (b * self._solve_S(b)).sum(-1).clamp(min=0) / one_minus_a2
            bad = ~(ok & torch.isfinite(b).all(-1) & torch.isfinite(mahal))
            if bad.any():
                nonfinite += int(bad.sum())
                b = torch.where(bad.unsqueeze(-1), torch.zeros_like(b), b)
                mahal = torch.where(bad, torch.zeros_like(mahal), mahal)
            over = mahal > bound ** 2
            clipped += int(over.sum())
            b = b * torch.where(over, bound / mahal.clamp(min=1e-30).sqrt(), torch.ones_like(mahal)).unsqueeze(-1)
            pkl = pkl + 0.5 * torch.where(over, torch.full_like(mahal, bound ** 2), mahal)
            z = m + a * (z - m) + b + one_minus_a2.sqrt() * self._noise(batch_shape)
        total = max(1, K * int(torch.Size(batch_shape).numel()))
        self.stats = {"step_size": float(h.detach()), "clipped_fraction": clipped / total, "nonfinite_drifts": nonfinite,
                      "mean_path_kl": float(pkl.detach().mean())}
        if nonfinite:
            warnings.warn(f"AutoLangevin: {nonfinite} non-finite drifts (of {total} particle steps) were set to zero; "
                          "the model's log density or its gradient was not finite there (e.g. a diverging ODE solve)",
                          RuntimeWarning)
        return z, ref.log_prob(z), pkl

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

    def get_posterior(self, *args, **kwargs):
        raise NotImplementedError("AutoLangevin's posterior has no closed form; use sample_ensemble, median or "
                                  "quantiles (Monte Carlo)")

    def sample_latent(self, *args, **kwargs):
        """Run the chain for every particle of the enclosing plates and emit ``Delta(z_K, log r(z_K) + PKL)``."""
        z, log_r, pkl = self._run_chain(self._plate_batch_shape(), args, kwargs)
        if self._max_plate_nesting:
            # a zero-density marker inside the model's deepest plate, so that tools which
            # guess the plate nesting from the guide alone (Predictive) put their vectorising plate left of the
            # model's plates; the exact drift evaluates the model inside the guide and needs those dims free
            name, size = self._marker_plate
            with pyro.plate(name, size, dim=-self._max_plate_nesting):
                pyro.sample(f"_{self._pyro_name}_nesting", dist.Delta(z.new_zeros(())),
                            infer={"is_auxiliary": True})
        return pyro.sample(f"_{self._pyro_name}_latent", dist.Delta(z, log_density=log_r + pkl, event_dim=1),
                           infer={"is_auxiliary": True})

    def _ensemble_latent(self, num_particles, args, kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        batch = torch.Size((num_particles,) + (1,) * self._max_plate_nesting)
        with torch.no_grad():
            z, _, _ = self._run_chain(batch, args, kwargs)
        return z.reshape(num_particles, self.latent_dim)

    def _constrain(self, latent):
        return {site["name"]: biject_to(site["fn"].support)(value)
                for site, value in self._unpack_latent(latent)}

    def sample_ensemble(self, num_particles, *args, **kwargs):
        """Draw ``num_particles`` fresh, independent ensemble members (constrained values, leading dim P).

        ``*args, **kwargs`` are the model's arguments (needed by the ``exact`` and ``hybrid`` drifts).
        """
        z = self._ensemble_latent(num_particles, args, kwargs)
        return {name: value.reshape((num_particles,) + self.prototype_trace.nodes[name]["value"].shape)
                for name, value in self._constrain(z).items()}

    def median(self, *args, **kwargs):
        """Monte Carlo posterior median of each site: the coordinate-wise median of ``num_quantile_samples``
        ensemble members in unconstrained space, mapped to the constrained space (the maps are monotone)."""
        z = self._ensemble_latent(self.num_quantile_samples, args, kwargs)
        return self._constrain(z.median(0).values)

    def quantiles(self, quantiles, *args, **kwargs):
        """Monte Carlo posterior quantiles of each site from ``num_quantile_samples`` ensemble members.

        :param quantiles: a list of levels in (0, 1).
        :returns: dict site -> tensor with a leading dim of ``len(quantiles)``.
        """
        z = self._ensemble_latent(self.num_quantile_samples, args, kwargs)
        q = torch.as_tensor(quantiles, dtype=z.dtype)
        if ((q <= 0) | (q >= 1)).any():
            raise ValueError(f"quantiles must lie in (0, 1), got {quantiles}")
        latents = torch.quantile(z, q, dim=0)
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
        std = self._marginal_std()
        tau = torch.tensor((self.num_steps - 1) / self.num_steps, dtype=z.dtype, device=z.device)
        return self._solve_S(std * self.score_net((z - self.loc) / std, tau) - (z - self.loc))
