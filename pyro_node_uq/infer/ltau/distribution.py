"""The predicted error distribution of LTAU: per test point, a weighted mixture of point masses.

For test point i the mixture is given by ``values[i]`` and ``weights[i]`` (summing to one): the recorded errors
of its k nearest training samples, each sample's epochs weighted equally.  An optional calibration
(:class:`~pyro_node_uq.infer.ltau.calibration.ErrorCalibration`) maps the CDF ``F`` to ``R(F(e / s))``, with a
per-point scale ``s`` that may grow with the neighbour distance.  For NODE predictions (batch shape ``(N, T)``
with ``times``) a calibration with ``memory > 0`` first averages the distributions over each trajectory's recent
past (:mod:`~pyro_node_uq.infer.ltau.memory`); the unsmoothed mixture is kept, so any calibration can be applied.
"""
import torch

from .memory import _LEVELS as _MEMORY_LEVELS
from .memory import smooth_along_time

__all__ = ["ErrorDistribution"]

_MEAN_LEVELS = 256  # quantile levels used to integrate the mean of an isotonically calibrated distribution


class ErrorDistribution:
    """Per-point error distributions with their mean, quantiles, CDF and the out-of-domain distance.

    :param torch.Tensor values: ``(M, L)`` support points.
    :param torch.Tensor weights: ``(M, L)`` non-negative weights, each row summing to one.
    :param torch.Tensor distance: ``(M,)`` mean distance to the k nearest training samples (out-of-domain score).
    :param torch.Tensor mean: ``(M,)`` exact uncalibrated means (default: from ``values`` and ``weights``).
    :param tuple batch_shape: shape of the outputs (``M`` points reshaped), default ``(M,)``.
    :param calibration: an :class:`ErrorCalibration` or ``None``.
    :param times: times ``(T,)`` of the last batch axis (a trajectory's time grid), needed by calibrations with
        ``memory > 0``; ``None``: the points are not trajectories.
    """

    def __init__(self, values, weights, distance, mean=None, batch_shape=None, calibration=None, times=None):
        if values.shape != weights.shape or values.dim() != 2:
            raise ValueError(f"weights: expected the shape of values {tuple(values.shape)}, got {tuple(weights.shape)}")
        order = values.argsort(-1)
        self._values = values.gather(-1, order)
        self._cumw = weights.gather(-1, order).cumsum(-1)
        self._cumw = self._cumw / self._cumw[:, -1:].clamp(min=1e-300)
        self._mean = (values * weights).sum(-1) if mean is None else mean
        self._distance = distance
        self.batch_shape = torch.Size((values.shape[0],) if batch_shape is None else batch_shape)
        if self.batch_shape.numel() != values.shape[0]:
            raise ValueError(f"batch_shape: {tuple(self.batch_shape)} does not hold {values.shape[0]} points")
        if times is not None and (not self.batch_shape or len(times) != self.batch_shape[-1]):
            raise ValueError(f"times: expected {self.batch_shape[-1:]} times (the last batch axis), got {len(times)}")
        self.times, self.memory, self._base = times, 0.0, None
        self.calibration = None
        if calibration is not None:  # from an uncalibrated snapshot, which a smoothed self keeps as its base
            self.__dict__.update(self._copy(None).with_calibration(calibration).__dict__)

    def _shape(self, flat, extra=()):
        return flat.reshape(self.batch_shape + tuple(extra))

    def _copy(self, calibration):
        new = object.__new__(ErrorDistribution)
        new.__dict__.update(self.__dict__)
        new.calibration = calibration
        return new

    def with_calibration(self, calibration):
        """The same distributions with another calibration (``None``: uncalibrated, no memory)."""
        memory = 0.0 if calibration is None else float(getattr(calibration, "memory", 0.0))
        if memory == self.memory:
            return self._copy(calibration)
        base = self if self._base is None else self._base
        if memory == 0:
            return base._copy(calibration)
        if base.times is None:
            raise ValueError("calibration: has memory > 0 but these distributions have no times (not trajectories)")
        levels = (torch.arange(_MEMORY_LEVELS, dtype=torch.float64) + 0.5) / _MEMORY_LEVELS
        raw = base._copy(None)
        q, mean, dist = smooth_along_time(raw.quantile(levels), raw.mean, raw.distance, raw.times, memory)
        new = ErrorDistribution(q.reshape(-1, len(levels)), torch.full_like(q.reshape(-1, len(levels)), 1 / len(levels)),
                                dist.reshape(-1), mean=mean.reshape(-1), batch_shape=base.batch_shape, times=base.times)
        new.memory, new._base, new.calibration = memory, base, calibration
        return new

    def __getitem__(self, key):
        """The distributions of a subset of points, indexed like a tensor of shape ``batch_shape``.

        The times are kept when whole trajectories are selected (the last axis untouched).
        """
        flat = torch.arange(self.batch_shape.numel()).reshape(self.batch_shape)[key]
        new = self._copy(self.calibration)
        new._values, new._cumw = self._values[flat.reshape(-1)], self._cumw[flat.reshape(-1)]
        new._mean, new._distance = self._mean[flat.reshape(-1)], self._distance[flat.reshape(-1)]
        new.batch_shape = flat.shape
        if self.times is not None:
            T = len(self.times)
            whole = flat.dim() > 0 and flat.shape[-1] == T and bool((flat.reshape(-1, T) % T == torch.arange(T)).all())
            new.times = self.times if whole else None
        new._base = None if self._base is None else self._base[key]
        return new

    # ------------------------------------------------------------------ raw (uncalibrated) mixture
    def _raw_cdf(self, e):
        """F(e) for e of shape (M, G)."""
        idx = torch.searchsorted(self._values, e.contiguous(), right=True)
        padded = torch.cat([self._cumw.new_zeros(len(self._cumw), 1), self._cumw], -1)
        return padded.gather(-1, idx).clamp(0, 1)

    def _raw_quantile(self, q):
        """F^{-1}(q) for q of shape (M, G): the smallest support value with cumulative weight >= q."""
        q = q.clamp(1e-12, 1.0).to(self._cumw.dtype)
        idx = torch.searchsorted(self._cumw, q.contiguous() - 1e-12).clamp(max=self._values.shape[-1] - 1)
        return self._values.gather(-1, idx)

    # ------------------------------------------------------------------ public
    @property
    def distance(self):
        """Mean distance to the k nearest training samples (standardised latent space), ``batch_shape``."""
        return self._shape(self._distance)

    @property
    def mean(self):
        """Expected error, ``batch_shape``."""
        cal = self.calibration
        if cal is None or cal.is_identity_map:
            return self._shape(self._mean * (1.0 if cal is None else cal.scales(self._distance)))
        levels = (torch.arange(_MEAN_LEVELS, dtype=torch.float64) + 0.5) / _MEAN_LEVELS
        return self.quantile(levels).mean(-1)

    def cdf(self, value):
        """P(error <= value).

        :param value: errors of shape ``batch_shape`` (one per point), or a 1-D grid ``(G,)`` of errors
            evaluated at every point (shape ``batch_shape + (G,)``); an exact ``batch_shape`` match wins.
        """
        value = torch.as_tensor(value, dtype=self._values.dtype)
        per_point = value.shape == self.batch_shape
        if not per_point and value.dim() > 1:
            raise ValueError(f"value: expected shape {tuple(self.batch_shape)} or a 1-D grid, got {tuple(value.shape)}")
        e = value.reshape(-1, 1) if per_point else value.reshape(1, -1).expand(len(self._values), -1)
        cal = self.calibration
        u = self._raw_cdf(e if cal is None else e / cal.scales(self._distance)[:, None])
        if cal is not None:
            u = cal.map_levels(u)
        return self._shape(u[:, 0]) if per_point else self._shape(u, (value.numel(),))

    def quantile(self, q):
        """Error quantiles at levels ``q`` (a float, or a 1-D tensor ``(G,)`` giving ``batch_shape + (G,)``)."""
        q = torch.as_tensor(q, dtype=torch.float64)
        if q.dim() > 1 or ((q < 0) | (q > 1)).any():
            raise ValueError(f"q: expected levels in [0, 1] as a float or a 1-D tensor, got {q}")
        cal = self.calibration
        levels = q if cal is None else cal.invert_levels(q)
        out = self._raw_quantile(levels.reshape(1, -1).expand(len(self._values), -1))
        if cal is not None:
            out = out * cal.scales(self._distance)[:, None]
        return self._shape(out[:, 0]) if q.dim() == 0 else self._shape(out, (q.numel(),))
