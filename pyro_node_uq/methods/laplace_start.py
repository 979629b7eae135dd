"""Gaussian guides started at a MAP fit with the Laplace widths of its basin.

A guide whose every coordinate starts at one std (``init_scale``) around a polished MAP fit is too wide in the
data-dominated directions and too narrow in the flat ones.  :func:`laplace_start` computes the log joint's
Hessian at the fit (:func:`~pyro_node_uq.infer.curvature.log_joint_hessian`) and starts each coordinate at
:math:`\\min(\\text{init\\_scale}, H_{ii}^{-1/2})` (:func:`~pyro_node_uq.infer.curvature.laplace_widths`): the
mean-field optimum of the Laplace approximation, capped where the curvature is too small to trust.

The means start at the fit and must move in units of these widths: Adam moves every coordinate of a parameter by
about ``lr`` at its first steps, far more than a narrow direction's width.  So the means' learning rates are scaled
by their median width (per site for ``AutoNormal``, one factor for the flat location of
``AutoLowRankMultivariateNormal``), as :meth:`~pyro_node_uq.infer.AutoLangevin.warm_start_lr_scales` does for the
Langevin guide; the widths themselves keep ``lr`` (Adam moves a small positive scale by about ``lr`` relative to it).
"""
import functools
import time

import torch
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal

from ..infer._pyro_compat import pyro_name, setup_prototype, unconstrained_shapes
from ..infer.curvature import laplace_widths, log_joint_hessian

__all__ = ["LAPLACE_MAX_DIM", "LaplaceStarted", "laplace_start"]

#: the most latent coordinates for which :func:`laplace_start` computes the Hessian (``2 D`` gradient evaluations
#: and a ``D x D`` matrix); above it the guide keeps its uniform ``init_scale``
LAPLACE_MAX_DIM = 2000


def laplace_start(guide, model, split, values, max_scale, max_dim=LAPLACE_MAX_DIM):
    """Start ``guide``'s stds at the Laplace widths of the log joint at ``values`` (capped at ``max_scale``).

    :param guide: an ``AutoNormal`` or ``AutoLowRankMultivariateNormal`` whose parameters exist (set up at
        ``values``, e.g. with ``init_loc_fn=init_to_value(values=values)``).
    :param model: the model the guide approximates, with its ``pyro.param`` s in the param store.
    :param split: the training split (the data of the log joint).
    :param dict values: the constrained point (a MAP fit's values).
    :param float max_scale: the widest start (the guide's ``init_scale``).
    :param int max_dim: above this many latent coordinates nothing is changed.
    :returns: ``(lr_scales, note)``: the means' learning-rate multipliers by param-store name, for
        :func:`~pyro_node_uq.infer.fit_svi`, and one line for the result's notes.
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
        ...     lr_scales, note = laplace_start(guide, model, problem.train, values, 5e-3)
        >>> from operator import attrgetter
        >>> width = attrgetter("R.0.weight")(guide.scales).detach()  # the site's initial stds
        >>> round(float(width.max()), 6), bool(width.min() < 1e-3), sorted(lr_scales)[0], note.split(":")[0]
        (0.005, True, 'AutoNormal.locs.R.0.bias', 'Laplace start')
    """
    if not isinstance(guide, (AutoNormal, AutoLowRankMultivariateNormal)):
        raise TypeError(f"laplace_start: expected an AutoNormal or AutoLowRankMultivariateNormal, got "
                        f"{type(guide).__name__}")
    sites = [name for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
    dim = sum(guide.prototype_trace.nodes[name]["value"].numel() for name in sites)
    if dim > max_dim:
        return {}, f"Laplace start skipped: {dim} latent coordinates (more than {max_dim}); every std at {max_scale:g}"
    clock = time.process_time()
    args, kwargs = model.fit_args(split)
    with torch.no_grad():
        values = {k: v for k, v in values.items() if k in sites}
    hessian, layout = log_joint_hessian(model, values, args, kwargs, sites=sites)
    widths = laplace_widths(hessian, max_scale)
    per_site = dict(zip([name for name, _ in layout],
                        [w.reshape(shape) for w, (_, shape) in zip(torch.split(widths, [s.numel() for _, s in layout]),
                                                                    layout)]))
    prefix = pyro_name(guide)
    if isinstance(guide, AutoNormal):
        lr_scales = {}
        for name, width in per_site.items():
            *path, last = name.split(".")  # AutoNormal nests a site "a.b" as scales.a.b
            parent = functools.reduce(getattr, path, guide.scales)
            # assigning a tensor to an existing PyroParam sets its unconstrained value in place (param store too)
            setattr(parent, last, width.to(getattr(parent, last).dtype))
            lr_scales[f"{prefix}.locs.{name}"] = float(width.median())
    else:  # Pyro's low-rank guide: std^2 = scale^2 (1 + |factor row|^2), about 2 scale^2 at its random start
        flat = torch.cat([per_site[name].reshape(-1) for name in unconstrained_shapes(guide)])
        guide.scale = (flat * 0.5 ** 0.5).to(guide.loc.dtype)
        lr_scales = {f"{prefix}.loc": float(flat.median())}
    narrowed = float((widths < max_scale).float().mean())
    note = (f"Laplace start: {narrowed:.0%} of {dim} coordinates narrower than {max_scale:g} (widths "
            f"{float(widths.min()):.2g} .. {max_scale:g}, median {float(widths.median()):.2g}; Hessian "
            f"{time.process_time() - clock:.1f} s CPU)")
    return lr_scales, note


class LaplaceStarted:
    """A ``guide_fn`` for :func:`~pyro_node_uq.methods.common.fit_guide` that builds ``make_guide(model)``, sets it
    up on ``split`` and starts it at the Laplace widths (:func:`laplace_start`); without ``values`` (no warm start)
    or with ``enabled=False`` it only builds the guide.  After the call, :attr:`lr_scales` holds the means'
    learning-rate multipliers (pass the dict itself to ``fit_guide``: it is read when the fit starts) and
    :attr:`notes` the line for the result.

    :param make_guide: ``make_guide(model) -> guide``.
    :param split: the training split.
    :param dict values: the warm start's constrained values, or ``None``.
    :param float max_scale: the widest start (the guide's ``init_scale``).
    :param bool enabled: compute the Laplace widths.
    :param dict lr_scales: the caller's own multipliers, which take precedence.
    """

    def __init__(self, make_guide, split, values, max_scale, enabled=True, lr_scales=None):
        self.make_guide, self.split, self.values, self.max_scale = make_guide, split, values, max_scale
        self.enabled = enabled and values is not None
        self.lr_scales, self.notes, self._given = dict(lr_scales or {}), [], set(lr_scales or {})

    def __call__(self, model):
        guide = self.make_guide(model)
        if self.enabled:
            args, kwargs = model.fit_args(self.split)
            setup_prototype(guide, *args, **kwargs)
            lr_scales, note = laplace_start(guide, model, self.split, self.values, self.max_scale)
            self.lr_scales.update({k: v for k, v in lr_scales.items() if k not in self._given})
            self.notes.append(note)
        return guide
