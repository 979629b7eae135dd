"""Summed Normal log-densities as ONE node of the autograd graph each, with their gradients written by hand: of
masked observations around a mean, and of weights under zero-mean priors.

``Normal(loc, scale).log_prob(y)``, masked and summed over the trajectory, is half a dozen elementwise ops and as
many nodes of the autograd graph; at small ensembles their dispatch and backward passes cost as much as the ODE
solve they score.  :func:`normal_log_lik` computes the same value with the same formula (torch's) and its gradient
from the standardised residuals ``z = (y - loc) / scale``::

    d lp / d loc = z / scale,    d lp / d scale = (z^2 - 1) / scale,    d lp / d y = -z / scale

(zero at unobserved entries), each summed to its argument's shape.  :func:`normal_prior_log_prob` sums
``Normal(0, s_k).log_prob(w_k)`` over every entry of several tensors ``w_k`` (a model's weights), gradient
``-w_k / s_k^2``.
"""
import math

import torch

__all__ = ["normal_log_lik", "normal_prior_log_prob"]

_HALF_LOG_2PI = math.log(math.sqrt(2 * math.pi))


class _NormalLogLik(torch.autograd.Function):
    @staticmethod
    def forward(ctx, loc, scale, value, mask):
        z = (value - loc) / scale
        lp = -(z * z) / 2 - torch.log(scale) - _HALF_LOG_2PI
        if mask is not None:
            lp = torch.where(mask, lp, lp.new_zeros(()))
        ctx.save_for_backward(z, scale, mask)
        ctx.shapes = loc.shape, scale.shape, value.shape
        return lp.sum((-1, -2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        z, scale, mask = ctx.saved_tensors
        g = grad[..., None, None] / scale
        if mask is not None:
            g = torch.where(mask, g, g.new_zeros(()))
        g_loc = g * z if ctx.needs_input_grad[0] or ctx.needs_input_grad[2] else None
        out = []
        for i, (value, shape) in enumerate(zip((g_loc, g * (z * z - 1) if ctx.needs_input_grad[1] else None,
                                                None if g_loc is None else -g_loc), ctx.shapes)):
            if value is None or not ctx.needs_input_grad[i]:
                out.append(None)
            else:
                out.append(value if value.shape == shape else value.sum_to_size(shape))
        return (*out, None)


def normal_log_lik(loc, scale, value, mask=None):
    """``sum over (T, obs_dim) of Normal(loc, scale).log_prob(value)`` where ``mask`` (unobserved entries score 0),
    ``batch``-shaped; equal to the summed ``torch.distributions.Normal`` log-density (same formula) with a
    hand-written gradient in ``loc``, ``scale`` and ``value``.

    :param torch.Tensor loc: means ``batch + (T, obs_dim)``.
    :param torch.Tensor scale: positive standard deviations, broadcastable to ``loc`` (a tensor).
    :param torch.Tensor value: observations, broadcastable to ``loc``.
    :param torch.Tensor mask: boolean, broadcastable to ``loc``, or ``None`` (all observed).

    Example::

        >>> loc = torch.zeros(2, 3, 1, requires_grad=True)
        >>> lp = normal_log_lik(loc, torch.tensor(1.0), torch.ones(2, 3, 1))
        >>> torch.allclose(lp, torch.distributions.Normal(0.0, 1.0).log_prob(torch.ones(2, 3, 1)).sum((-1, -2)))
        True
    """
    return _NormalLogLik.apply(loc, scale, value, mask)


class _NormalPrior(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scales, *values):
        ctx.scales = scales
        ctx.save_for_backward(*values)
        total = 0.0
        for w, s in zip(values, scales):
            flat = w.reshape(-1)
            total = total + torch.dot(flat, flat) * (-0.5 / (s * s)) - w.numel() * (math.log(s) + _HALF_LOG_2PI)
        return total if torch.is_tensor(total) else values[0].new_tensor(total)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return (None, *(w * (-grad / (s * s)) if need else None
                        for w, s, need in zip(ctx.saved_tensors, ctx.scales, ctx.needs_input_grad[1:])))


def normal_prior_log_prob(values, scales):
    """``sum_k sum over the entries of Normal(0, scales[k]).log_prob(values[k])``, a 0-dim tensor: the log density
    of weights under independent zero-mean Normal priors (a model's weight sites), with a hand-written gradient.

    :param values: tensors ``w_k`` (at least one).
    :param scales: their prior standard deviations, positive floats.

    Example::

        >>> w = [torch.ones(2, 3), torch.zeros(4)]
        >>> lp = normal_prior_log_prob(w, [1.0, 2.0])
        >>> want = sum(torch.distributions.Normal(0.0, s).log_prob(v).sum() for v, s in zip(w, [1.0, 2.0]))
        >>> torch.allclose(lp, want)
        True
    """
    return _NormalPrior.apply(tuple(float(s) for s in scales), *values)
