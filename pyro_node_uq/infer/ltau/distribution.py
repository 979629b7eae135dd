"""The predicted error distribution of LTAU: per test point, a weighted mixture of point masses.

For test point i the mixture is given by ``values[i]`` and ``weights[i]`` (summing to one): the recorded errors
of its k nearest training samples, each sample's epochs weighted equally.  An optional calibration
(:class:`~pyro_node_uq.infer.ltau.calibration.ErrorCalibration`) maps the CDF ``F`` to ``R(F(e / s))``, with a
per-point scale ``s`` that may grow with the neighbour distance.
"""
import torch

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
    """

    def __init__(self, values, weights, distance, mean=None, batch_shape=None, calibration=None):
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
        self.calibration = calibration

    def _shape(self, flat, extra=()):
        return flat.reshape(self.batch_shape + tuple(extra))

    def with_calibration(self, calibration):
        """The same distributions with another calibration (``None``: uncalibrated)."""
        new = object.__new__(ErrorDistribution)
        new.__dict__.update(self.__dict__)
        new.calibration = calibration
        return new

    def __getitem__(self, key):
        """The distributions of a subset of points, indexed like a tensor of shape ``batch_shape``."""
        flat = torch.arange(self.batch_shape.numel()).reshape(self.batch_shape)[key]
        new = self.with_calibration(self.calibration)
        new._values, new._cumw = self._values[flat.reshape(-1)], self._cumw[flat.reshape(-1)]
        new._mean, new._distance = self._mean[flat.reshape(-1)], self._distance[flat.reshape(-1)]
        new.batch_shape = flat.shape
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
