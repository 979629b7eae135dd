"""Interpolation of exogenous inputs x(t), given at sample times, for evaluation inside an ODE solver.

Linear and cubic Hermite (finite-difference slopes, C1) interpolation of a batch of input histories on one
shared time grid.  Outside the grid the end values are held constant.  A dozen lines each, written here
rather than pulling in torchcde (unmaintained since 2021) for two formulas.
"""
import functools

import torch

__all__ = ["Interpolator"]


class Interpolator:
    """Evaluate inputs ``x`` of shape ``batch + (T, D)`` given at times ``times`` (``(T,)``) at any time.

    :param torch.Tensor times: strictly increasing sample times ``(T,)``.
    :param torch.Tensor x: sampled inputs ``batch + (T, D)``.
    :param str kind: ``"linear"`` or ``"cubic"``.
    """

    def __init__(self, times, x, kind="linear"):
        if kind not in ("linear", "cubic"):
            raise ValueError(f"interpolation must be 'linear' or 'cubic', got {kind!r}")
        self.times, self.x, self.kind = times, x, kind
        if kind == "cubic" and x.shape[-2] < 3:
            self.kind = "linear"

    # the differences and slopes are made at the first evaluation off the sample times (a solve that finds its
    # stage inputs memoised never needs them)
    @functools.cached_property
    def dt(self):
        return self.times[1:] - self.times[:-1]

    @functools.cached_property
    def dx(self):
        return self.x[..., 1:, :] - self.x[..., :-1, :]

    @functools.cached_property
    def slopes(self):
        secant = self.dx / self.dt.unsqueeze(-1)
        inner = 0.5 * (secant[..., 1:, :] + secant[..., :-1, :])
        return torch.cat([secant[..., :1, :], inner, secant[..., -1:, :]], dim=-2)

    def __call__(self, t):
        """Inputs at scalar time ``t``: shape ``batch + (D,)``."""
        if self.x.shape[-2] == 1:
            return self.x[..., 0, :]
        return self._at(torch.as_tensor(t, dtype=self.times.dtype, device=self.times.device).reshape(1))[..., 0, :]

    def at_grid(self, t):
        """Inputs at each time of a 1-D tensor ``t`` in one vectorised evaluation: shape ``batch + (len(t), D)``."""
        if t.shape == self.times.shape and torch.equal(t, self.times):
            return self.x
        if self.x.shape[-2] == 1:
            return self.x.expand(self.x.shape[:-2] + (t.shape[0], self.x.shape[-1]))
        return self._at(t.to(self.times.dtype))

    def _at(self, t):
        T = self.x.shape[-2]
        t = t.clamp(self.times[0], self.times[-1])
        i = (torch.searchsorted(self.times, t, right=True) - 1).clamp(0, T - 2)
        h = self.dt[i]
        u = ((t - self.times[i]) / h).unsqueeze(-1)
        x0, dx = self.x[..., i, :], self.dx[..., i, :]
        if self.kind == "linear":
            return x0 + u * dx
        m0, m1 = self.slopes[..., i, :] * h.unsqueeze(-1), self.slopes[..., i + 1, :] * h.unsqueeze(-1)
        u2, u3 = u * u, u * u * u
        return x0 + (u3 - 2 * u2 + u) * m0 + (3 * u2 - 2 * u3) * dx + (u3 - u2) * m1
