"""Calibration of LTAU's error distributions on validation data, so predicted quantiles cover.

With uncalibrated CDFs F_i and validation errors e_i, the probability-integral transforms u_i = F_i(e_i) are
uniform when the predictions are calibrated.  Two maps are fitted:

* ``"isotonic"`` (Kuleshov et al., 2018): R(p) = fraction of u_i <= p, the monotone (isotonic) recalibration
  curve; the calibrated CDF is R(F(e)) and the calibrated quantile F^{-1}(R^{-1}(q)).
* ``"scale"``: one factor s with calibrated CDF F(e / s), chosen to minimise the validation pinball loss (exactly:
  a weighted quantile, see ``_best_scale``), with an optional growth of s with the neighbour distance.

For trajectories, the calibration also holds a ``memory`` (:mod:`~pyro_node_uq.infer.ltau.memory`): the
distributions are first averaged over each trajectory's recent past.  :meth:`ErrorCalibration.fit` chooses it
among candidates by the validation pinball loss, like the scale; unlike a monotone map, this changes the ranking.
"""
import math

import torch

__all__ = ["ErrorCalibration", "calibration_error", "default_memories"]

_LEVELS = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)


def _check_errors(dist, errors):
    errors = torch.as_tensor(errors, dtype=torch.float64)
    if errors.shape != dist.batch_shape:
        raise ValueError(f"errors: expected one error per point, shape {tuple(dist.batch_shape)}, "
                         f"got {tuple(errors.shape)}")
    if not torch.isfinite(errors).all():
        raise ValueError("errors: contain NaN or inf")
    return errors


def calibration_error(dist, errors, levels=None):
    """Mean absolute gap between nominal levels p and the observed fraction of errors below the p-quantile.

    :param ErrorDistribution dist: predicted error distributions.
    :param errors: true errors of shape ``dist.batch_shape``.
    :param levels: nominal levels (default 0.05, 0.10, ..., 0.95).
    """
    u = dist.cdf(_check_errors(dist, errors)).reshape(-1)
    levels = _LEVELS if levels is None else torch.as_tensor(levels, dtype=torch.float64)
    return float(((u[:, None] <= levels).double().mean(0) - levels).abs().mean())


_DISTANCE_COEFS = torch.tensor([0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0], dtype=torch.float64)


def _pinball(quantiles, errors, levels):
    """Mean quantile loss; ``quantiles (..., M, L)``, ``errors (M,)``."""
    diff = errors[:, None] - quantiles
    return torch.maximum(levels * diff, (levels - 1) * diff).mean((-1, -2))


def _best_scale(quantiles, errors, levels):
    """The factor ``s > 0`` minimising the pinball loss of ``s * quantiles`` ``(M, L)``, and that loss.

    With ``z = q >= 0`` the loss ``sum z rho_p(e / z - s)`` is convex and piecewise linear in ``s``: its minimum
    is the weighted quantile of the ratios ``e / z`` (weights ``z``) at the level ``sum z p / sum z``.
    """
    z = quantiles.reshape(-1)
    ratio = (errors[:, None] / quantiles.clamp(min=1e-300)).reshape(-1)
    order = ratio.argsort()
    cum = z[order].cumsum(0)
    target = float((quantiles * levels).sum())
    i = min(int(torch.searchsorted(cum, torch.tensor([target], dtype=cum.dtype))), len(cum) - 1)
    scale = max(float(ratio[order][i]), 1e-12)
    return float(_pinball(quantiles * scale, errors, levels)), scale


class ErrorCalibration:
    """A monotone map of error CDFs: calibrated ``F_c(e) = R(F(e / s))`` with ``s = scale * (1 + coef * distance)``.

    :param float scale: error scale factor ``s0`` (1: none).
    :param float distance_coef: growth ``c >= 0`` of the scale with the mean neighbour distance.
    :param grid: levels ``p`` of the piecewise-linear map ``R`` and its values (``None``: identity).
    :param float memory: time constant of the trajectory memory applied first (0: none; see
        :func:`~pyro_node_uq.infer.ltau.memory.memory_weights`).
    """

    def __init__(self, scale=1.0, distance_coef=0.0, grid=None, values=None, memory=0.0):
        if not float(scale) > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if not float(distance_coef) >= 0:
            raise ValueError(f"distance_coef must be >= 0, got {distance_coef}")
        if not float(memory) >= 0:
            raise ValueError(f"memory must be >= 0, got {memory}")
        self.scale, self.distance_coef, self.grid, self.values = float(scale), float(distance_coef), grid, values
        self.memory = float(memory)

    def scales(self, distance):
        """Per-point scale ``s0 * (1 + c * d)``."""
        return self.scale * (1 + self.distance_coef * distance)

    @property
    def is_identity_map(self):
        return self.grid is None

    @staticmethod
    def _interp(x, xp, fp):
        idx = torch.searchsorted(xp, x.contiguous().clamp(0, 1)).clamp(1, len(xp) - 1)
        x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
        return f0 + (f1 - f0) * (x.clamp(0, 1) - x0) / (x1 - x0)

    def map_levels(self, u):
        """R(u)."""
        return u if self.grid is None else self._interp(u.to(torch.float64), self.grid, self.values)

    def invert_levels(self, q):
        """R^{-1}(q)."""
        return q if self.grid is None else self._interp(q.to(torch.float64), self.values, self.grid)

    @classmethod
    def fit(cls, dist, errors, method="isotonic", distance_scaling=True, num_levels=101, memories=(0.0,)):
        """Fit on validation predictions ``dist`` (uncalibrated) and their true ``errors``.

        :param ErrorDistribution dist: predictions on validation points.
        :param errors: true errors of shape ``dist.batch_shape``.
        :param str method: ``"isotonic"`` (scale, then a recalibration curve) or ``"scale"``.
        :param bool distance_scaling: let the scale grow with the neighbour distance.
        :param memories: candidate trajectory memories (time constants, ``inf`` allowed); the one whose fitted
            scale gives the lowest pinball loss is kept.  Candidates above 0 need ``dist.times``.
        """
        if method not in ("isotonic", "scale"):
            raise ValueError(f"method must be 'isotonic' or 'scale', got {method!r}")
        errors = _check_errors(dist, errors).reshape(-1)
        best = (float("inf"), 1.0, 0.0, 0.0)
        for memory in memories:
            raw = dist.with_calibration(cls(memory=memory))
            loss, scale, coef = _fit_scale(raw, errors, distance_scaling)
            if loss < best[0]:
                best = (loss, scale, coef, float(memory))
        cal = cls(best[1], best[2], memory=best[3])
        if method == "isotonic":
            u = dist.with_calibration(cal).cdf(errors.reshape(dist.batch_shape)).reshape(-1)
            grid = torch.linspace(0, 1, num_levels, dtype=torch.float64)
            ecdf = (u[:, None] <= grid).double().mean(0)
            values = (1 - 1e-6) * ecdf + 1e-6 * grid  # strictly increasing, so R can be inverted
            values[0], values[-1] = min(float(values[0]), 1e-6), 1.0
            cal.grid, cal.values = grid, values
        return cal

    def state_dict(self):
        return {"scale": self.scale, "distance_coef": self.distance_coef, "grid": self.grid, "values": self.values,
                "memory": self.memory}

    def __repr__(self):
        kind = "identity" if self.grid is None else f"isotonic({len(self.grid)} levels)"
        return (f"ErrorCalibration(scale={self.scale:.4g}, distance_coef={self.distance_coef:.3g}, map={kind}, "
                f"memory={self.memory:.3g})")


def _fit_scale(raw, errors, distance_scaling):
    """``(pinball loss, scale, distance coef)`` of the best scale ``s0 (1 + c d)``, ``c`` on a grid.

    ``raw``: distributions with an identity calibration (no scale; possibly a memory).
    """
    q = raw.quantile(_LEVELS).reshape(-1, len(_LEVELS))
    d = raw.distance.reshape(-1)
    coefs = _DISTANCE_COEFS if distance_scaling else _DISTANCE_COEFS[:1]
    best = (float("inf"), 1.0, 0.0)
    for c in coefs:
        loss, scale = _best_scale(q * (1 + c * d)[:, None], errors, _LEVELS)
        if loss < best[0]:
            best = (loss, scale, float(c))
    return best


def default_memories(times):
    """Candidate memories for :meth:`ErrorCalibration.fit`: 0, fractions 1/40 ... 2/5 of the time span, and ``inf``."""
    span = float(times[-1] - times[0])
    return (0.0,) + tuple(f * span for f in (0.025, 0.05, 0.1, 0.2, 0.4)) + (math.inf,)
