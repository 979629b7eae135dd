"""The registry of comparable methods: name -> runner with its defaults, per-problem and quick options, and the
method whose fit it starts from.

A runner is ``run(model, split, *, warm_start=None, seed=0, progress_bar=True, **options) -> MethodResult``; it
raises :class:`MethodSkipped` when the method does not apply (a model too large for NUTS, an optional dependency
not installed).  Options resolve as ``defaults`` (loop counts scaled by :data:`PROBLEM_COST`), then
``problems[problem]``, then (in quick mode) ``quick``, then the caller's overrides.  Each method registers itself
in its own module with :func:`register`, so adding a method to the comparison is one new file in
``pyro_node_uq/methods/``.

The registry is the one home of a method's defaults: a runner's own keyword defaults must equal its registered
``defaults`` (checked when it registers), and a registered runner that takes ``**options`` gets the registered
defaults it does not name filled in, so calling ``METHODS[name].runner`` directly, or the runner function, runs
the same method as the comparison (up to the per-problem scaling of loop counts).

A method that fits one autoguide registers it as a :class:`GuideRecipe` (``guide=``): the ``fit`` command builds
its guides from these recipes (:func:`fit_guides`), so its guides and their defaults live here too.  A variant
registered as a thin wrapper around another runner (``run(model, split, **options)`` calling ``run_langevin`` with
``score`` set) names that runner and the keywords it sets (``wraps=``, ``sets=``): its options are that runner's.
"""
import functools
import inspect
from dataclasses import dataclass, field

__all__ = [
    "GAUSSIAN_GUIDE_PROBLEMS",
    "METHODS",
    "PROBLEM_COST",
    "GuideRecipe",
    "Method",
    "MethodSkipped",
    "demo_methods",
    "fit_guides",
    "register",
    "resolve_methods",
    "with_defaults",
]

#: loop counts of full runs are multiplied by this per problem (elastoplastic's steps cost ~1.7x chemical's)
PROBLEM_COST = {"elastoplastic": 0.6}
LOOP_KEYS = ("num_steps", "num_iters", "num_samples", "warmup_steps", "map_steps")
#: per-problem options of the Gaussian guides started at MAP (AutoNormal, low-rank).  Elastoplastic's model learns
#: its noise scale, and a noise scale fitted jointly with a guide absorbs whatever spread the guide has not yet
#: shed from its initial scale: at the cost-scaled budget the guides there are far from converged and their noise
#: (and band) inflated, so they keep the full budget and more
GAUSSIAN_GUIDE_PROBLEMS = {"elastoplastic": {"num_steps": 900}}


@dataclass(frozen=True)
class GuideRecipe:
    """The autoguide a registered method fits, as the ``fit`` command builds it: from the model's initial values
    (no warm start) with these constructor ``defaults``.

    :ivar str name: the guide's name on the command line (``fit --guide NAME``).
    :ivar guide_class: the autoguide class.
    :ivar dict defaults: constructor options of a fit from the model's initialisation (the command line's
        ``--guide-option`` s override them).

    Example::

        >>> from pyro.infer.autoguide import AutoNormal
        >>> recipe = GuideRecipe("autonormal", AutoNormal, {"init_scale": 0.05})
        >>> recipe.options({"init_scale": 0.1}), recipe.options({})
        ({'init_scale': 0.1}, {'init_scale': 0.05})
    """

    name: str
    guide_class: object
    defaults: dict = field(default_factory=dict)

    def options(self, overrides):
        """The constructor options: ``defaults`` updated by ``overrides``."""
        return {**self.defaults, **overrides}

    def build(self, model, init_loc_fn, overrides=None):
        """The guide of ``model`` started at ``init_loc_fn``."""
        return self.guide_class(model, init_loc_fn=init_loc_fn, **self.options(overrides or {}))


class MethodSkipped(ValueError):
    """Raised by a method runner that does not apply to this model, problem or installation; the message says why
    (the comparison records the method as skipped and goes on)."""


@dataclass
class Method:
    """One registered method.

    :ivar str name: registry name (CLI ``--methods``).
    :ivar runner: ``runner(model, split, *, warm_start=None, seed=0, progress_bar=True, **options)``.
    :ivar str description: one line for the report.
    :ivar dict defaults: options of a full run.
    :ivar dict quick: overrides of a quick run (``--quick``).
    :ivar dict problems: problem name -> overrides.
    :ivar str kind: ``"posterior"`` (scored by predictive metrics) or ``"error"`` (an error predictor such as
        LTAU: scored by error ranking and out-of-domain detection; its predictive is its base fit's).
    :ivar str start: the registered method whose fit this one starts from (``warm_start``), or ``None``.
    :ivar bool demo: part of the quick demo set (``make demo``).
    :ivar tuple scaled: option names that are loop counts (scaled by :data:`PROBLEM_COST`).
    :ivar GuideRecipe guide: the autoguide the method fits, for the ``fit`` command, or ``None``.
    :ivar wraps: for a variant registered as ``run(model, split, **options)`` around another runner: that runner
        (its options are this method's), else ``None``.
    :ivar tuple sets: the keywords such a variant sets itself (not options of the method).
    """

    name: str
    runner: object
    description: str
    defaults: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)
    kind: str = "posterior"
    start: str = None
    demo: bool = False
    scaled: tuple = LOOP_KEYS
    guide: GuideRecipe = None
    wraps: object = None
    sets: tuple = ()

    def options(self, problem_name, quick=False, overrides=None):
        """The resolved options for ``problem_name``."""
        factor = PROBLEM_COST.get(problem_name, 1.0)
        opts = {k: max(1, int(v * factor)) if k in self.scaled else v for k, v in self.defaults.items()}
        opts.update(self.problems.get(problem_name, {}))
        if quick:
            opts.update(self.quick)
        opts.update(overrides or {})
        return opts


METHODS = {}


def register(name, description=None, **fields):
    """Decorator registering ``runner`` as method ``name`` (fields as :class:`Method`); ``register(method)`` adds
    (or replaces) a ready :class:`Method`.

    Example::

        >>> @register("toy", "a toy method", defaults={"num_steps": 3}, start="map")
        ... def run_toy(model, split, *, warm_start=None, seed=0, progress_bar=True, num_steps=3):
        ...     return warm_start
        >>> METHODS["toy"].options("chemical")
        {'num_steps': 3}
        >>> del METHODS["toy"]
    """
    if isinstance(name, Method):
        METHODS[name.name] = name
        return name

    def decorate(runner):
        METHODS[name] = Method(name, with_defaults(runner, fields.get("defaults", {}), name), description, **fields)
        return runner
    return decorate


def with_defaults(runner, defaults, name="runner"):
    """``runner`` with the registered ``defaults`` as its own: options it declares must already default to them
    (a :class:`TypeError` names the disagreement); options it takes through ``**options`` are filled in.

    Example::

        >>> def run(model, split, *, num_steps=10, **options):
        ...     return num_steps, options
        >>> with_defaults(run, {"num_steps": 10, "lr": 0.1})(None, None)
        (10, {'lr': 0.1})
    """
    params = inspect.signature(runner).parameters
    named = {k: p for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    wrong = {k: (v, named[k].default) for k, v in defaults.items() if k in named and named[k].default != v}
    if wrong:
        raise TypeError(f"{name}: registered defaults disagree with {runner.__name__}'s own: "
                        + ", ".join(f"{k}={v!r} (signature {d!r})" for k, (v, d) in wrong.items()))
    fill = {k: v for k, v in defaults.items() if k not in named}
    if not fill:
        return runner
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        raise TypeError(f"{name}: {runner.__name__} takes no options {sorted(fill)}")

    @functools.wraps(runner)
    def run(*args, **options):
        return runner(*args, **{**fill, **options})
    return run


def resolve_methods(names):
    """Methods for a list of names (``"all"`` is every registered method); unknown names raise a clear error."""
    if names in (None, "all", ["all"]):
        return list(METHODS.values())
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; registered methods are {sorted(METHODS)}")
    return [METHODS[n] for n in names]


def fit_guides():
    """``fit --guide`` name -> :class:`GuideRecipe` of every registered method that fits one autoguide.

    Example::

        >>> from pyro_node_uq.methods import fit_guides
        >>> sorted(fit_guides())
        ['autonormal', 'langevin', 'layerwise', 'lowrank']
    """
    return {m.guide.name: m.guide for m in METHODS.values() if m.guide is not None}


def demo_methods():
    """Names of the quick demo set (``make demo``): methods registered with ``demo=True``."""
    return [m.name for m in METHODS.values() if m.demo]
