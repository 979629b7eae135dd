"""AutoLayerwise: some sites (a layer, a network) are sampled by a stochastic guide, every other latent site is a
point estimate optimised jointly in the same SVI loop.

With stochastic sites ``z_s`` and point sites ``theta`` the guide is ``q(z_s) delta(theta)``: the ELBO
``E_q[log p(x, z_s, theta)] + H(q)`` is maximised over ``q`` and ``theta`` together, so ``theta`` is re-optimised
(not frozen at a MAP fit) and, for an exact-family ``q``, converges to ``argmax_theta log p(x, theta)``.

The stochastic guide is built on the model *conditioned on the current point values*: its latent sites are the
stochastic ones only, and a guide that evaluates the model (``AutoLangevin`` with ``score="exact"`` or
``"hybrid"``) sees the point sites at their current values, not at prior draws.
"""
import operator

import torch
from pyro import poutine
from pyro.infer.autoguide import (
    AutoDelta,
    AutoGuide,
    AutoGuideList,
    AutoNormal,
    init_to_value,
)
from pyro.infer.autoguide.initialization import init_to_median

from ...nn import select_sites
from .._pyro_compat import autoguide_state, guide_model, replace_model

__all__ = ["AutoLayerwise"]

class _PointConditioned:
    """The model with every point site conditioned on the point guide's current (detached) value.

    Holds the layer-wise guide (not its model) so that replacing the layer-wise guide's model, e.g. a counting
    wrapper by the bare model after fitting, carries over to the stochastic guide.
    """

    def __init__(self, layerwise):
        self.layerwise = layerwise

    def __call__(self, *args, **kwargs):
        model = guide_model(self.layerwise)
        if model is None:
            raise RuntimeError("AutoLayerwise: this guide was unpickled without its model (Pyro does not pickle "
                               "models); set guide._model = (model,) before sampling with a model-based guide")
        return poutine.condition(model, self.layerwise.point_values())(*args, **kwargs)


def _map_init_values(init_from):
    """Constrained values ``site -> tensor`` of a MAP fit: an ``AutoDelta``, an object holding one as ``.guide``
    (a fit's result) or a dict."""
    if isinstance(init_from, dict):
        return {k: torch.as_tensor(v).detach() for k, v in init_from.items()}
    guide = getattr(init_from, "guide", init_from)
    if isinstance(guide, AutoDelta) and guide.prototype_trace is not None:
        with torch.no_grad():
            return {k: v.detach().clone() for k, v in guide.median().items()}
    raise TypeError("init_from must be a fitted AutoDelta (or a result holding one as .guide) or a dict site -> value, "
                    f"got {type(init_from).__name__}")


class AutoLayerwise(AutoGuideList):
    """A layer-wise stochastic guide: chosen sites by ``guide``, every other latent site by ``AutoDelta``.

    Both parts are trained jointly by one SVI loop (an :class:`~pyro.infer.autoguide.AutoGuideList` of
    ``[AutoDelta, guide]``).  The parts are built on the first call, when the model's sites are known;
    afterwards :attr:`point_guide`, :attr:`stochastic_guide`, :attr:`point_sites` and :attr:`stochastic_sites`
    are available.

    :param callable model: a Pyro model with continuous latent sites (e.g. a
        :class:`~pyro_node_uq.models.NODEModel`).
    :param stochastic: the stochastic sites: a glob pattern or list of them (``"Z.*"``, ``"R.1.*"``) or network
        names (``"R"`` stands for ``"R.*"``).  Every pattern must match a latent site.
    :param str subset: instead of ``stochastic``, a named group of sites that the model resolves itself with
        ``model.layer_sites(subset)`` (e.g. ``"last_layer"`` of a :class:`~pyro_node_uq.models.NODEModel`; the
        model names the groups it knows and refuses others).
    :param type guide: the autoguide class of the stochastic sites (``AutoLangevin``, ``AutoNormal``,
        ``AutoMultivariateNormal``...), constructed as ``guide(conditioned_model, **guide_kwargs)``.
    :param callable init_loc_fn: initialisation of both parts (default the model's ``init_loc_fn(0)`` if it has
        one, else ``init_to_median``); passed to ``guide`` unless ``guide_kwargs`` names its own.
    :param init_from: a MAP fit (``AutoDelta``, a result holding one as ``.guide``, or a dict ``site -> value``) whose values
        initialise the point sites and the stochastic guide's location; sites it lacks use ``init_loc_fn``.
    :param guide_kwargs: keyword arguments of ``guide`` (``num_steps``, ``score``, ``init_scale``...).

    .. note:: Both parts work under ``Predictive(model, guide=...)``, parallel or sequential.  A stochastic guide
        that evaluates the model (``AutoLangevin`` with ``score="exact"`` or ``"hybrid"``) conditions on the data
        of its first call (see :meth:`AutoLangevin.condition_on`) and sees the point sites at their current values.
        Pickling drops the model (Pyro's convention, as for its own guides): after loading, set
        ``guide._model = (model,)`` before sampling such a guide.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0., 1.))
        ...     w = pyro.sample("w", dist.Normal(0., 1.))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("obs", dist.Normal(mu + w, 1.), obs=y)
        >>> guide = AutoLayerwise(model, stochastic="w", guide=AutoNormal)
        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO())
        >>> loss = svi.step(torch.randn(10))
        >>> guide.point_sites, guide.stochastic_sites
        (['mu'], ['w'])
    """

    def __init__(self, model, stochastic=None, *, subset=None, guide=AutoNormal, init_loc_fn=None, init_from=None,
                 **guide_kwargs):
        if (stochastic is None) == (subset is None):
            raise ValueError("give exactly one of stochastic= (site patterns or network names) and subset=")
        if subset is not None:
            if not isinstance(subset, str):
                raise ValueError(f"subset must be a name of a group of sites, got {subset!r}")
            if not hasattr(model, "layer_sites"):
                raise ValueError(f"subset={subset!r} needs a model with layer_sites() (a NODEModel); "
                                 "give stochastic= patterns instead")
            try:
                stochastic = model.layer_sites(subset)
            except ValueError as e:
                raise ValueError(f"subset must be one of the groups the model names: {e}") from None
        patterns = [stochastic] if isinstance(stochastic, str) else list(stochastic)
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"stochastic: expected a site pattern or a list of them, got {stochastic!r}")
        if not (isinstance(guide, type) and issubclass(guide, AutoGuide)):
            raise TypeError(f"guide must be an AutoGuide class (AutoLangevin, AutoNormal...), got {guide!r}")
        if init_loc_fn is None:
            init_loc_fn = model.init_loc_fn(0) if hasattr(model, "init_loc_fn") else init_to_median
        if init_from is not None:
            init_loc_fn = init_to_value(values=_map_init_values(init_from), fallback=init_loc_fn)
        self.patterns, self.subset, self.guide_class = patterns, subset, guide
        self.init_loc_fn, self.guide_kwargs = init_loc_fn, guide_kwargs
        self.point_sites = self.stochastic_sites = None
        super().__init__(model)

    # ------------------------------------------------------------------ building the parts
    def _resolve(self, latent):
        """Split latent site names into (stochastic, point); clear errors for unmatched or all-site choices."""
        chosen = set()
        for pattern in self.patterns:
            try:
                chosen.update(select_sites(latent, [pattern, pattern + ".*"]))
            except ValueError:
                raise ValueError(f"stochastic: pattern {pattern!r} matches no latent site; latent sites are "
                                 f"{latent}") from None
        stochastic = [n for n in latent if n in chosen]
        point = [n for n in latent if n not in chosen]
        if not point:
            raise ValueError(f"stochastic: {self.patterns} selects every latent site; use "
                             f"{self.guide_class.__name__}(model) directly")
        return stochastic, point

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        latent = []
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if site["fn"].support.is_discrete:
                raise ValueError(f"AutoLayerwise: site {name!r} is discrete; only continuous sites can be point "
                                 "estimates or sampled by the stochastic guide.  Enumerate it out (mark it "
                                 "infer={'enumerate': 'parallel'} and use TraceEnum_ELBO, as documented in "
                                 "https://pyro.ai/examples/enumeration.html) and hide it from this guide "
                                 f"with AutoLayerwise(poutine.block(model, hide=[{name!r}]), ...)")
            latent.append(name)
        self.stochastic_sites, self.point_sites = self._resolve(latent)
        kw = dict(self.guide_kwargs)
        kw.setdefault("init_loc_fn", self.init_loc_fn)
        self.append(AutoDelta(poutine.block(self.model, expose=self.point_sites), init_loc_fn=self.init_loc_fn))
        self.append(self.guide_class(_PointConditioned(self), **kw))

    def forward(self, *args, **kwargs):
        self._restore_models()
        return super().forward(*args, **kwargs)

    def _restore_models(self):
        """Pyro's ``AutoGuide.__getstate__`` drops each part's model (also on the pickled original): put the
        stochastic guide's point-conditioned model back."""
        if len(self) > 1 and guide_model(self[1]) is None:
            replace_model(self[1], _PointConditioned(self))

    def __getstate__(self):
        return autoguide_state(self, super().__getstate__)  # pickling does not strip the original of its model

    def load_state_dict(self, state_dict, strict=True):
        if self.prototype_trace is None and len(state_dict):
            raise RuntimeError("AutoLayerwise.load_state_dict: this guide has no parameters yet (its parts are built "
                               "on its first call); call it once with the model's arguments, guide(*args), then "
                               "load the state")
        return super().load_state_dict(state_dict, strict=strict)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._restore_models()

    @property
    def point_guide(self):
        """The ``AutoDelta`` of the point sites (built on the first call)."""
        return self[0] if len(self) else None

    @property
    def stochastic_guide(self):
        """The guide of the stochastic sites (built on the first call)."""
        return self[1] if len(self) > 1 else None

    def point_values(self):
        """Current constrained values ``site -> tensor`` of the point sites (detached)."""
        if self.point_guide is None or self.point_guide.prototype_trace is None:
            raise RuntimeError("AutoLayerwise: call the guide once (or run an SVI step) before reading point values")
        return {name: operator.attrgetter(name)(self.point_guide).detach() for name in self.point_sites}

    # ------------------------------------------------------------------ summaries
    def _ensure_setup(self, args, kwargs):
        self._restore_models()
        if self.prototype_trace is None or self.point_guide.prototype_trace is None:
            with torch.no_grad(), poutine.block():
                self(*args, **kwargs)

    def median(self, *args, **kwargs):
        """Posterior median of each site: the stochastic guide's median, point sites at their value."""
        self._ensure_setup(args, kwargs)
        result = self.point_values()
        result.update(self.stochastic_guide.median(*args, **kwargs))
        return result

    def quantiles(self, quantiles, *args, **kwargs):
        """Posterior quantiles (leading dim ``len(quantiles)``); point sites repeat their value at every level."""
        self._ensure_setup(args, kwargs)
        n = len(quantiles)
        result = {k: v.expand((n,) + v.shape).clone() for k, v in self.point_values().items()}
        result.update(self.stochastic_guide.quantiles(quantiles, *args, **kwargs))
        return result
