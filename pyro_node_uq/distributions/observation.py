"""The observation model over a NODE's noise-free mean ``f``: error models, masks, censoring, diverged members.

Error models (``a = scale``, ``b = prop_scale``), the standard deviation of ``y`` around ``f``:

* ``"additive"``: ``sd = a``;
* ``"proportional"``: ``sd = a |f|`` (``a`` is the coefficient of variation);
* ``"combined"``: ``sd = sqrt(a^2 + b^2 f^2)`` (additive plus proportional);
* ``"lognormal"``: ``log y = log f + eps`` with ``eps`` of scale ``a``, for positive outputs (``f`` is the median;
  the density is over ``y``, Jacobian included, so log-likelihoods compare across error models).

Noise is ``"normal"`` or ``"studentt"`` (``df`` degrees of freedom).  Standard deviations are floored at the dtype's
machine epsilon, so a proportional model at ``f = 0`` stays finite.  An entry marked ``censored`` was reported
below a quantification limit (LLOQ) and holds that limit as its value (the NONMEM/Monolix ``CENS`` convention):
it scores ``log P(y <= limit)``.  Unobserved entries (``mask`` False) score 0; members flagged ``diverged`` by the
solve score ``-inf`` at every observed entry.
"""
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints

from ..utils.tensors import broadcast_shapes, expanded
from ..validation import check_positive
from .node_solve_check import check_float_dtype
from .normal_loglik import normal_log_lik
from .solve_cache import check_sample_once
from .studentt_cdf import studentt_log_cdf

__all__ = ["ERROR_MODELS", "NOISES", "ErrorModel", "NODEObservation"]

ERROR_MODELS = ("additive", "proportional", "combined", "lognormal")
NOISES = ("normal", "studentt")


@dataclass(frozen=True)
class ErrorModel:
    """A checked observation error model: the rule from the noise-free mean ``f`` to the noise law of ``y``.

    Build it with :meth:`coerce`, the one place the three options are checked; the model constructors do so once,
    and the distributions take an instance as given (a string is checked there, for direct use).

    :param str kind: one of :data:`ERROR_MODELS` (module docstring).
    :param str noise: one of :data:`NOISES`.
    :param float df: Student-t degrees of freedom.

    Example::

        >>> law = ErrorModel.coerce("combined")
        >>> law.sd(torch.tensor([0.0, 2.0]), 0.3, 0.2)          # sqrt(0.3^2 + (0.2 f)^2)
        tensor([0.3000, 0.5000])
        >>> ErrorModel.coerce("additive", noise="cauchy")
        Traceback (most recent call last):
        ...
        ValueError: noise: expected one of ('normal', 'studentt'), got 'cauchy'
    """

    kind: str = "additive"
    noise: str = "normal"
    df: float = 4.0

    @classmethod
    def coerce(cls, error_model="additive", noise="normal", df=4.0):
        """``error_model`` itself when it is an :class:`ErrorModel` (then ``noise`` and ``df`` must be left at
        their defaults: the instance carries them), else the checked ``ErrorModel(error_model, noise, df)``."""
        if isinstance(error_model, cls):
            if (noise, df) != ("normal", 4.0):
                raise ValueError("noise, df: an ErrorModel carries its own noise and df; give them to it instead")
            return error_model
        if not isinstance(error_model, str) or error_model not in ERROR_MODELS:
            raise ValueError(f"error_model: expected one of {ERROR_MODELS}, got {error_model!r}")
        if not isinstance(noise, str) or noise not in NOISES:
            raise ValueError(f"noise: expected one of {NOISES}, got {noise!r}")
        return cls(error_model, noise, check_positive(df, "df (the Student-t degrees of freedom)"))

    @property
    def normal_around_mean(self):
        """Whether ``y`` is ``f`` plus zero-mean noise of std :meth:`sd` (all but the log-normal model), so that a
        predictive draw can be scored as a Normal around ``f`` with that std."""
        return self.kind != "lognormal"

    def sd(self, f, scale, prop_scale=None):
        """The std of the elementwise law around ``f`` (of ``log y`` around ``log f`` for ``"lognormal"``):
        ``scale``, ``scale |f|`` or ``sqrt(scale^2 + (prop_scale f)^2)``, floored at the dtype's machine epsilon
        where it depends on ``f`` (a positive scale alone needs no floor)."""
        if self.kind == "proportional":
            sd = scale * f.abs()
        elif self.kind == "combined":
            sd = torch.sqrt(scale * scale + (prop_scale * f) ** 2)
        else:
            return scale
        return sd.clamp(min=torch.finfo(f.dtype).eps)


class NODEObservation(TorchDistribution):
    """Masked, possibly censored observations ``batch + (T, obs_dim)`` around a NODE mean (module docstring).

    :param torch.Tensor loc: the noise-free mean ``f``, ``batch + (T, obs_dim)`` (e.g. :attr:`NODESolution.mean`).
    :param scale: positive additive scale (the coefficient for ``"proportional"``, the log-scale for
        ``"lognormal"``), broadcastable to ``loc``.
    :param error_model: one of :data:`ERROR_MODELS`, or an :class:`ErrorModel` (which carries ``noise`` and
        ``df``: leave those at their defaults).
    :param str noise: ``"normal"`` or ``"studentt"``.
    :param float df: Student-t degrees of freedom.
    :param prop_scale: positive proportional coefficient of the ``"combined"`` model.
    :param torch.Tensor mask: boolean, broadcastable to ``loc``: observed entries (default all).
    :param torch.Tensor censored: boolean, broadcastable to ``loc``: entries below the quantification limit,
        whose value is the limit.
    :param torch.Tensor diverged: boolean ``batch`` of members whose solve diverged (e.g.
        :attr:`NODESolution.diverged`).

    Example::

        >>> f = torch.tensor([[1.0], [4.0]])                                  # T = 2, one output
        >>> d = NODEObservation(f, 0.1, error_model="proportional", censored=torch.tensor([[True], [False]]))
        >>> y = torch.tensor([[0.5], [4.2]])                                  # the first entry: "< 0.5"
        >>> lp = d.log_prob_pointwise(y)                                      # log P(y <= 0.5), log N(4.2; 4, 0.4)
        >>> [round(v, 4) for v in lp[:, 0].tolist()]
        [-15.065, -0.1276]
    """

    arg_constraints = {"scale": constraints.positive}  # noqa: RUF012
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc, scale, error_model="additive", noise="normal", df=4.0, prop_scale=None, mask=None,
                 censored=None, diverged=None, validate_args=None):
        self.law = law = ErrorModel.coerce(error_model, noise, df)
        if law.kind == "combined" and prop_scale is None:
            raise ValueError("prop_scale: the 'combined' error model needs a proportional coefficient")
        if loc.dim() < 2:
            raise ValueError(f"loc: expected batch + (T, obs_dim), got shape {tuple(loc.shape)}")
        self.loc = check_float_dtype(loc, "loc")
        self.scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
        self.prop_scale = None if prop_scale is None else torch.as_tensor(prop_scale, dtype=loc.dtype,
                                                                         device=loc.device)
        self.error_model, self.noise, self.df = law.kind, law.noise, law.df
        for name, m in (("mask", mask), ("censored", censored), ("diverged", diverged)):
            if m is not None and (not torch.is_tensor(m) or m.dtype != torch.bool):
                raise TypeError(f"{name}: expected a bool tensor, got {getattr(m, 'dtype', type(m).__name__)}")
        self.mask, self.censored, self.diverged = mask, censored, diverged
        batch = [loc.shape[:-2]] + [s.shape[:-2] for s in (self.scale, self.prop_scale) if s is not None
                                    and s.dim() > 2]
        if diverged is not None:
            batch.append(diverged.shape)
        super().__init__(broadcast_shapes(*batch), loc.shape[-2:], validate_args=validate_args)

    # ------------------------------------------------------------------ the elementwise law
    def _sd(self):
        return self.law.sd(self.loc, self.scale, self.prop_scale)

    def _center(self):
        """Location of the elementwise law: ``f``, or ``log f`` (floored at the smallest float) for lognormal."""
        if self.error_model == "lognormal":
            return torch.log(self.loc.clamp(min=torch.finfo(self.loc.dtype).tiny))
        return self.loc

    def _base(self):
        """The elementwise law, unvalidated: its scale is this distribution's (validated here) or floored."""
        if self.noise == "normal":
            return dist.Normal(self._center(), self._sd(), validate_args=False)
        return dist.StudentT(self.df, self._center(), self._sd(), validate_args=False)

    # ------------------------------------------------------------------ Distribution interface
    @property
    def mean(self):
        if self.error_model != "lognormal":
            return self.loc.expand(self.batch_shape + self.event_shape)
        if self.noise == "studentt":  # a log-t has no finite mean
            return torch.full(self.batch_shape + self.event_shape, float("inf"), dtype=self.loc.dtype)
        return torch.exp(self._center() + self._sd() ** 2 / 2).expand(self.batch_shape + self.event_shape)

    @property
    def variance(self):
        if self.error_model == "lognormal":
            if self.noise == "studentt":
                return torch.full(self.batch_shape + self.event_shape, float("inf"), dtype=self.loc.dtype)
            return dist.LogNormal(self._center(), self._sd()).variance.expand(self.batch_shape + self.event_shape)
        return self._base().variance.expand(self.batch_shape + self.event_shape)

    def rsample(self, sample_shape=torch.Size()):  # noqa: B008
        """Draws of the uncensored observations (censoring applies to data, not to predictions)."""
        y = self._base().rsample(sample_shape)
        y = torch.exp(y) if self.error_model == "lognormal" else y
        return y.expand(torch.Size(sample_shape) + self.batch_shape + self.event_shape)

    def log_prob_pointwise(self, value):
        """Log-likelihood of each entry, ``batch + (T, obs_dim)``: 0 where unobserved, ``-inf`` where diverged."""
        lp = self._entries(value)
        lp = lp.expand(broadcast_shapes(lp.shape, self.batch_shape + self.event_shape))
        if self.diverged is not None:
            observed = torch.ones_like(lp, dtype=torch.bool) if self.mask is None else self.mask.expand(lp.shape)
            lp = torch.where(self.diverged[..., None, None] & observed, torch.full_like(lp, -float("inf")), lp)
        return lp

    def _entries(self, value):
        """Log-likelihood of each entry, 0 where unobserved, before the divergence flags."""
        base = self._base()
        v = value
        if self.error_model == "lognormal":
            if self.mask is not None:
                v = torch.where(self.mask, v, torch.ones_like(v))
            if (v <= 0).any():
                raise ValueError("value: the 'lognormal' error model needs positive observations (mask out or "
                                 "censor the others)")
            v = torch.log(v)
        lp = base.log_prob(v)
        if self.error_model == "lognormal":
            lp = lp - v  # the Jacobian of y -> log y: a density over y
        if self.censored is not None:
            z = (v - base.loc) / base.scale
            log_cdf = torch.special.log_ndtr(z) if self.noise == "normal" else studentt_log_cdf(z, self.df)
            lp = torch.where(self.censored, log_cdf, lp)
        if self.mask is not None:
            lp = torch.where(self.mask, lp, torch.zeros_like(lp))
        return lp

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        if self.law.kind == "additive" and self.noise == "normal" and self.censored is None:  # one graph node
            lp = normal_log_lik(self.loc, self.scale, value, self.mask)
        else:
            lp = self._entries(value).sum((-1, -2))
        lp = expanded(lp, broadcast_shapes(lp.shape, self.batch_shape))
        if self.diverged is None or not (torch.jit.is_tracing() or self.diverged.any()):
            return lp  # nothing to mask (a traced graph keeps the mask: other inputs may diverge)
        return lp.masked_fill(self.diverged, -float("inf"))

    def _validate_sample(self, value):
        """The shape and support checks, each value tensor checked once per shape (see
        :meth:`~pyro_node_uq.distributions.solve_cache.SolveCache.check_once`)."""
        check_sample_once(self, value, super()._validate_sample)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NODEObservation, _instance)
        new.__dict__.update(self.__dict__)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        if self.diverged is not None:
            new.diverged = self.diverged.expand(batch_shape)
        super(NODEObservation, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new
