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
import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints

from .node_solve_check import check_float_dtype
from .studentt_cdf import studentt_log_cdf
from ..utils.tensors import broadcast_shapes

__all__ = ["ERROR_MODELS", "NODEObservation"]

ERROR_MODELS = ("additive", "proportional", "combined", "lognormal")


class NODEObservation(TorchDistribution):
    """Masked, possibly censored observations ``batch + (T, obs_dim)`` around a NODE mean (module docstring).

    :param torch.Tensor loc: the noise-free mean ``f``, ``batch + (T, obs_dim)`` (e.g. :attr:`NODESolution.mean`).
    :param scale: positive additive scale (the coefficient for ``"proportional"``, the log-scale for
        ``"lognormal"``), broadcastable to ``loc``.
    :param str error_model: one of :data:`ERROR_MODELS`.
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

    arg_constraints = {"scale": constraints.positive}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc, scale, error_model="additive", noise="normal", df=4.0, prop_scale=None, mask=None,
                 censored=None, diverged=None, validate_args=None):
        if error_model not in ERROR_MODELS:
            raise ValueError(f"error_model: expected one of {ERROR_MODELS}, got {error_model!r}")
        if noise not in ("normal", "studentt"):
            raise ValueError(f"noise: expected 'normal' or 'studentt', got {noise!r}")
        if error_model == "combined" and prop_scale is None:
            raise ValueError("prop_scale: the 'combined' error model needs a proportional coefficient")
        if loc.dim() < 2:
            raise ValueError(f"loc: expected batch + (T, obs_dim), got shape {tuple(loc.shape)}")
        self.loc = check_float_dtype(loc, "loc")
        self.scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
        self.prop_scale = None if prop_scale is None else torch.as_tensor(prop_scale, dtype=loc.dtype,
                                                                         device=loc.device)
        self.error_model, self.noise, self.df = error_model, noise, float(df)
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
        f, a = self.loc, self.scale
        if self.error_model == "proportional":
            sd = a * f.abs()
        elif self.error_model == "combined":
            sd = torch.sqrt(a * a + (self.prop_scale * f) ** 2)
        else:  # a positive scale needs no floor
            return a
        return sd.clamp(min=torch.finfo(f.dtype).eps)

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

    def rsample(self, sample_shape=torch.Size()):
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
        lp = self._entries(value).sum((-1, -2))
        lp = lp.expand(broadcast_shapes(lp.shape, self.batch_shape))
        return lp if self.diverged is None else lp.masked_fill(self.diverged, -float("inf"))

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
