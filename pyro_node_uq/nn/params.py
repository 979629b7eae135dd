"""Naming, shaping, priors and (un)flattening of network parameters as Pyro sample sites."""
import fnmatch
from collections import OrderedDict

import pyro
import pyro.distributions as dist
import torch

from ..utils.tensors import broadcast_shapes

__all__ = ["flatten_params", "resolve_prior_scale", "sample_params", "select_sites", "unflatten_params"]


def resolve_prior_scale(site, prior_scale):
    """The prior standard deviation of ``site``.

    :param str site: a parameter name such as ``"R.0.weight"``.
    :param prior_scale: a positive float for every site, or a dict mapping glob patterns (``"Z.*"``,
        ``"*.bias"``) to floats; the first matching pattern wins and ``"*"`` gives the default.
    """
    if isinstance(prior_scale, dict):
        for pattern, value in prior_scale.items():
            if fnmatch.fnmatchcase(site, pattern):
                scale = float(value)
                break
        else:
            raise ValueError(f"prior_scale: no pattern matches site {site!r}; add a '*' default")
    else:
        scale = float(prior_scale)
    if not scale > 0:
        raise ValueError(f"prior_scale for site {site!r} must be positive, got {scale}")
    return scale


def sample_params(shapes, prior_scale=1.0, dtype=None, device=None):
    """Draw each parameter as a Pyro sample site with a ``Normal(0, prior_scale)`` prior.

    Call this outside any data plate: each site is one event of shape ``shapes[name]``; vectorised particle
    or predictive plates add leading batch dimensions.

    :param dict shapes: site name -> event shape (e.g. :meth:`BatchedMLP.param_shapes`).
    :param prior_scale: float or dict of glob patterns, see :func:`resolve_prior_scale`.
    :returns: an ordered dict site name -> sampled tensor.
    """
    params = OrderedDict()
    for site, shape in shapes.items():
        scale = resolve_prior_scale(site, prior_scale)
        loc = torch.zeros(shape, dtype=dtype, device=device)
        params[site] = pyro.sample(site, dist.Normal(loc, scale).to_event(len(shape)))
    return params


def flatten_params(params, shapes):
    """Concatenate parameters ``batch + event`` into one tensor ``batch + (D,)`` in the order of ``shapes``."""
    parts = []
    for site, shape in shapes.items():
        value = params[site]
        batch = value.shape[: value.dim() - len(shape)]
        parts.append(value.reshape(batch + (-1,)))
    batch = broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(batch + p.shape[-1:]) for p in parts], dim=-1)


def unflatten_params(flat, shapes):
    """Inverse of :func:`flatten_params`: split ``batch + (D,)`` into a dict of ``batch + event`` tensors."""
    total = sum(int(torch.Size(s).numel()) for s in shapes.values())
    if flat.shape[-1] != total:
        raise ValueError(f"unflatten_params: expected last dim {total}, got shape {tuple(flat.shape)}")
    params, start = OrderedDict(), 0
    batch = flat.shape[:-1]
    for site, shape in shapes.items():
        n = int(torch.Size(shape).numel())
        params[site] = flat[..., start:start + n].reshape(batch + tuple(shape))
        start += n
    return params


def select_sites(names, patterns):
    """The names among ``names`` that match any glob pattern in ``patterns`` (order of ``names`` kept)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"no site matches {list(patterns)}; sites are {list(names)}")
    return chosen
