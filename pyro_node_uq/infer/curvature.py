"""The curvature of a model's log joint at a point, in Pyro's unconstrained space, and the Laplace widths it gives a
Gaussian guide started there.

A guide started at a polished MAP fit with one initial std for every coordinate is far too wide in the
data-dominated directions of a NODE, which are orders of magnitude narrower than the flat ones: its first ELBO
particles land high on the walls of the basin and the fit spends its budget climbing back.  The Laplace
approximation :math:`\\mathcal N(z^*, H^{-1})` at the mode :math:`z^*` (:math:`H` the Hessian of the negative log
joint) knows every direction's width.  A mean-field Gaussian fitted to a Gaussian has the variances :math:`1 /
H_{ii}` (the diagonal of the precision, not of the covariance), so :func:`laplace_widths` starts each coordinate of
a mean-field guide at the optimum of the Laplace approximation.

:func:`log_joint_hessian` takes central differences of the log joint's gradient, one perturbed coordinate per
particle of a vectorised :class:`~pyro_node_uq.infer.LogJoint` evaluation (``2 B`` particles per block of ``B``
coordinates).  It needs first derivatives only, which every ODE solver of the package provides (the adjoint and
fused solvers included), where double backpropagation would need each solver's backward pass to be differentiable.
"""
import math

import torch

from .log_joint import LogJoint, value_and_grad

__all__ = ["laplace_widths", "log_joint_hessian"]


def log_joint_hessian(model, values, args=(), kwargs=None, *, sites=None, step=1e-4, batch_size=64):
    """Hessian of the negative log joint :math:`-\\log p(\\text{data}, x(u)) - \\log|dx/du|` in the unconstrained
    coordinates :math:`u` at the point ``values``.

    :param model: a Pyro model (its ``pyro.param`` s as they are in the param store).
    :param dict values: constrained value of every latent site (other entries are ignored).
    :param tuple args: the model's arguments, with the data.
    :param dict kwargs: its keyword arguments.
    :param sites: the latent sites (default: every unobserved site of one trace); another unobserved site raises.
    :param float step: the central differences' step in unconstrained units.  It sets the precision where the
        curvature is small (the gradient's rounding error over ``2 step``): in float32 with a step of 1e-4 the
        curvatures above about 1e2 come out to a few percent, flatter directions only roughly.
    :param int batch_size: coordinates per vectorised evaluation (``2 batch_size`` particles).
    :returns: ``(hessian, layout)``: the symmetrised ``(D, D)`` Hessian, with non-finite columns (a diverging solve
        at a perturbed point) as NaN, and the list of ``(site, unconstrained shape)`` in the order of its
        coordinates.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0., 1.))
        ...     s = pyro.sample("s", dist.LogNormal(0., 1.))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("obs", dist.Normal(mu, s), obs=y)
        >>> y = torch.tensor([0.5, -0.5, 1.5, -1.5], dtype=torch.float64)
        >>> values = {"mu": torch.tensor(0., dtype=torch.float64), "s": torch.tensor(1., dtype=torch.float64)}
        >>> H, layout = log_joint_hessian(model, values, (y,))
        >>> layout
        [('mu', torch.Size([])), ('s', torch.Size([]))]
        >>> [round(float(h), 4) for h in H.diagonal()]  # 1 + n / s^2 and 1 + 2 sum(y^2) / s^2 (log s at 0)
        [5.0, 11.0]
    """
    joint = LogJoint.from_model(model, args, kwargs, latent_sites=sites)
    point, layout = [], []
    for name, (transform, _, shape) in joint.sites.items():
        if name not in values:
            raise ValueError(f"values: no value for the latent site {name!r}")
        u = transform(torch.as_tensor(values[name]).reshape(shape)).detach()
        point.append(u.reshape(-1))
        layout.append((name, u.shape))
    z0 = torch.cat(point)
    sizes = [p.numel() for p in point]
    dim = z0.numel()

    def log_density(z):
        parts = torch.split(z, sizes, -1)
        return joint({name: part.reshape((z.shape[0],) + shape) for (name, shape), part in zip(layout, parts)})

    hessian = z0.new_empty(dim, dim)
    for start in range(0, dim, batch_size):
        idx = torch.arange(start, min(dim, start + batch_size))
        rows = torch.arange(len(idx))
        z = z0.expand(2 * len(idx), dim).clone()
        z[rows, idx] += step
        z[len(idx) + rows, idx] -= step
        _, grad, ok = value_and_grad(log_density, z)
        column = -(grad[: len(idx)] - grad[len(idx):]) / (2 * step)
        column[~(ok[: len(idx)] & ok[len(idx):])] = math.nan
        hessian[:, idx] = column.T
    return (hessian + hessian.T) / 2, layout


def laplace_widths(hessian, max_scale):
    """Initial std of each coordinate of a mean-field Gaussian started at the point of ``hessian``:
    :math:`\\min(\\text{max\\_scale}, H_{ii}^{-1/2})`, and ``max_scale`` where :math:`H_{ii}` is not positive or
    not finite (a flat or non-convex direction, or a diverging solve: the Laplace approximation says nothing there).

    :param torch.Tensor hessian: ``(D, D)`` (or its diagonal ``(D,)``) from :func:`log_joint_hessian`.
    :param float max_scale: the widest start (the guide's ``init_scale``).
    :returns: ``(D,)`` widths.

    Example::

        >>> laplace_widths(torch.tensor([[1e6, 0.], [0., 1.]]), 0.01)
        tensor([0.0010, 0.0100])
    """
    diag = hessian.diagonal() if hessian.dim() == 2 else hessian
    usable = torch.isfinite(diag) & (diag > 0)
    widths = torch.where(usable, diag.clamp_min(torch.finfo(diag.dtype).tiny).rsqrt(), torch.full_like(diag, max_scale))
    return widths.clamp(max=max_scale)
