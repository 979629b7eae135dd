"""Gaussian guides started at a MAP fit with the Laplace widths of its basin.

A guide whose every coordinate starts at one std (``init_scale``) around a polished MAP fit is too wide in the
data-dominated directions and too narrow in the flat ones.  :func:`laplace_start` computes the log joint's
Hessian at the fit (:func:`~pyro_node_uq.infer.curvature.log_joint_hessian`) and starts each coordinate at
:math:`\\min(\\text{init\\_scale}, H_{ii}^{-1/2})` (:func:`~pyro_node_uq.infer.curvature.laplace_widths`): the
mean-field optimum of the Laplace approximation, capped where the curvature is too small to trust.

The means start at the fit and must move in units of these widths: Adam moves every coordinate of a parameter by
about ``lr`` per step, far more than a narrow direction's width, and a plain fit throws its narrow coordinates out of
the basin at its first steps.  So each mean becomes a ``PyroParam`` optimised in units of its Laplace width
(:class:`AffineReal`: coordinate ``i`` moves by about ``lr * min(1, width_i / STEP_WIDTH)``), a per-coordinate
learning rate that Adam itself does not offer; the widths keep ``lr`` (Adam moves a small positive scale by about
``lr`` relative to it).  ``guide.locs`` still reads the means, so ``median``, ``quantiles``, pickling and a guide
started from this one (``AutoLangevin(init_from=...)``) see an ordinary ``AutoNormal``.
"""
import functools
import math
import time

import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.autoguide.utils import deep_setattr
from pyro.nn.module import PyroParam
from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import AffineTransform

from ..infer._pyro_compat import pyro_param_event_dim, setup_prototype
from ..infer.curvature import laplace_widths, log_joint_hessian

__all__ = ["LAPLACE_MAX_DIM", "STEP_WIDTH", "AffineReal", "LaplaceStarted", "laplace_start", "loc_in_units",
           "site_widths"]

#: the most latent coordinates for which :func:`laplace_start` computes the Hessian (``2 D`` gradient evaluations
#: and a ``D x D`` matrix); above it the guide keeps its uniform ``init_scale``
LAPLACE_MAX_DIM = 2000


#: the Laplace width at and above which a mean takes Adam's plain steps; narrower ones take proportionally smaller
#: steps (at ``lr`` 0.01 a tenth of their width)
STEP_WIDTH = 0.1


class AffineReal(constraints.Constraint):
    """The real line reached from an unconstrained ``u`` as ``anchor + unit * u``: a ``PyroParam`` with this
    constraint is optimised in units of ``unit``, so Adam (which moves every unconstrained coordinate by about
    ``lr`` per step) moves coordinate ``i`` by about ``lr * unit[i]``: a per-coordinate learning rate.

    :param torch.Tensor anchor: the value at ``u = 0``.
    :param torch.Tensor unit: positive, the shape of ``anchor``.
    """

    is_discrete = False
    event_dim = 0

    def __init__(self, anchor, unit):
        self.anchor, self.unit = anchor, unit
        super().__init__()

    def check(self, value):
        return constraints.real.check(value)


@biject_to.register(AffineReal)
@transform_to.register(AffineReal)
def _affine_real(constraint):
    return AffineTransform(constraint.anchor, constraint.unit)


def _in_units(module, name, unit):
    """Replace ``module``'s (nested, dotted) ``PyroParam`` ``name`` by one of the same value and event dim whose
    steps are in ``unit`` (an existing param-store entry of it goes with the old one)."""
    *path, last = name.split(".")
    parent = functools.reduce(getattr, path, module)
    value = getattr(parent, last).detach().clone()
    event_dim = pyro_param_event_dim(parent, last)
    deep_setattr(module, name, PyroParam(value, AffineReal(value, unit.to(value.dtype).reshape(value.shape)),
                                         event_dim))


def loc_in_units(guide, unit):
    """Make a guide's flat mean ``guide.loc`` (a plain ``nn.Parameter``: AutoLangevin's ``(D,)`` or ``(M, D)``, Pyro's
    low-rank guide's ``(D,)``) a ``PyroParam`` optimised in ``unit`` (:class:`AffineReal`): coordinate ``i`` then
    moves by about ``lr * unit[i]`` per step.  The guide must be set up; its mean keeps its value."""
    loc = guide.loc.detach().clone()
    guide.loc = PyroParam(loc, AffineReal(loc, unit.to(loc.dtype).expand(loc.shape).clone()), loc.dim())


def site_widths(model, split, values, sites, max_scale, step_width=STEP_WIDTH):
    """The Laplace widths (capped at ``max_scale``) and the means' step units at the point ``values``, by site.

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` (its ``pyro.param`` s in the param store).
    :param split: the training split.
    :param dict values: constrained values of (at least) the latent ``sites``.
    :param list sites: the latent sites, in the order of the flat result.
    :param float max_scale: the widest width.
    :param float step_width: the width at and above which a mean takes Adam's plain steps.
    :returns: ``(per_site, widths, units)``: site -> ``(widths, units)`` in the site's unconstrained shape, and all
        the widths and all the units as flat vectors in the order of ``sites``.
    """
    args, kwargs = model.fit_args(split)
    hessian, layout = log_joint_hessian(model, {k: v for k, v in values.items() if k in sites}, args, kwargs,
                                        sites=sites)
    widths = laplace_widths(hessian, max_scale)
    units = (laplace_widths(hessian, math.inf) / step_width).clamp(max=1.0)
    sizes = [shape.numel() for _, shape in layout]
    per_site = {name: (w.reshape(shape), u.reshape(shape)) for (name, shape), w, u in
                zip(layout, torch.split(widths, sizes), torch.split(units, sizes))}
    return per_site, *(torch.cat([per_site[name][i].reshape(-1) for name in sites]) for i in (0, 1))


def laplace_start(guide, model, split, values, max_scale, max_dim=LAPLACE_MAX_DIM, step_width=STEP_WIDTH):
    """Start ``guide``'s stds at the Laplace widths of the log joint at ``values`` (capped at ``max_scale``).

    :param guide: an ``AutoNormal`` or ``AutoLowRankMultivariateNormal`` whose parameters exist (set up at
        ``values``, e.g. with ``init_loc_fn=init_to_value(values=values)``).
    :param model: the model the guide approximates, with its ``pyro.param`` s in the param store.
    :param split: the training split (the data of the log joint).
    :param dict values: the constrained point (a MAP fit's values).
    :param float max_scale: the widest start (the guide's ``init_scale``).
    :param int max_dim: above this many latent coordinates nothing is changed.
    :param float step_width: the Laplace width at and above which a mean takes Adam's plain steps.
    :returns: one line for the result's notes.
    :raises TypeError: another kind of guide.

    Example::

        >>> import pyro
        >>> from pyro.infer.autoguide import AutoNormal, init_to_value
        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.methods import run_map
        >>> from pyro_node_uq.methods.common import map_values
        >>> from pyro_node_uq.utils.seeding import param_scope
        >>> problem = load_problem("chemical", num_train=4)
        >>> model = problem.default_model()
        >>> fit = run_map(model, problem.train, num_steps=20, progress_bar=False)
        >>> values = map_values(fit)
        >>> with param_scope(fit.param_state):
        ...     guide = AutoNormal(model, init_loc_fn=init_to_value(values=values), init_scale=5e-3)
        ...     _ = guide(*problem.train.args)
        ...     note = laplace_start(guide, model, problem.train, values, 5e-3)
        >>> from operator import attrgetter
        >>> width = attrgetter("R.0.weight")(guide.scales).detach()  # the site's initial stds
        >>> round(float(width.max()), 6), bool(width.min() < 1e-3), note.split(":")[0]
        (0.005, True, 'Laplace start')
    """
    if not isinstance(guide, (AutoNormal, AutoLowRankMultivariateNormal)):
        raise TypeError(f"laplace_start: expected an AutoNormal or AutoLowRankMultivariateNormal, got "
                        f"{type(guide).__name__}")
    sites = [name for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
    dim = sum(guide.prototype_trace.nodes[name]["value"].numel() for name in sites)
    if dim > max_dim:
        return f"Laplace start skipped: {dim} latent coordinates (more than {max_dim}); every std at {max_scale:g}"
    clock = time.process_time()
    per_site, widths, units = site_widths(model, split, values, sites, max_scale, step_width)
    if isinstance(guide, AutoNormal):
        for name, (width, unit) in per_site.items():
            *path, last = name.split(".")  # AutoNormal nests a site "a.b" as scales.a.b
            parent = functools.reduce(getattr, path, guide.scales)
            # assigning a tensor to an existing PyroParam sets its unconstrained value in place (param store too)
            setattr(parent, last, width.to(getattr(parent, last).dtype))
            _in_units(guide.locs, name, unit)
    else:  # Pyro's low-rank guide: std^2 = scale^2 (1 + |factor row|^2), about 2 scale^2 at its random start
        # (its flat latent follows the prototype trace's order, as ``sites`` does)
        guide.scale = (widths * 0.5 ** 0.5).to(guide.loc.dtype)
        loc_in_units(guide, units)
    narrowed = float((widths < max_scale).float().mean())
    note = (f"Laplace start: {narrowed:.0%} of {dim} coordinates narrower than {max_scale:g} (widths "
            f"{float(widths.min()):.2g} .. {max_scale:g}, median {float(widths.median()):.2g}; Hessian "
            f"{time.process_time() - clock:.1f} s CPU)")
    return note


class LaplaceStarted:
    """A ``guide_fn`` for :func:`~pyro_node_uq.methods.common.fit_guide` that builds ``make_guide(model)``, sets it
    up on ``split`` and starts it at the Laplace widths (:func:`laplace_start`); without ``values`` (no warm start)
    or with ``enabled=False`` it only builds the guide.  After the call :attr:`notes` holds the line for the
    result.

    :param make_guide: ``make_guide(model) -> guide``.
    :param split: the training split.
    :param dict values: the warm start's constrained values, or ``None``.
    :param float max_scale: the widest start (the guide's ``init_scale``).
    :param bool enabled: compute the Laplace widths.
    """

    def __init__(self, make_guide, split, values, max_scale, enabled=True):
        self.make_guide, self.split, self.values, self.max_scale = make_guide, split, values, max_scale
        self.enabled = enabled and values is not None
        self.notes = []

    def __call__(self, model):
        guide = self.make_guide(model)
        if self.enabled:
            args, kwargs = model.fit_args(self.split)
            setup_prototype(guide, *args, **kwargs)
            self.notes.append(laplace_start(guide, model, self.split, self.values, self.max_scale))
        return guide
