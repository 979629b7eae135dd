"""Checking method options before a run: every key must reach a parameter of the method's runner (directly, or
through the ``**options`` it passes on), and every value must have the type of that parameter's default.

A misspelt option or a value of the wrong type is refused by name before any fit starts, instead of a
``TypeError`` from deep inside a method after the others have run.
"""
import functools
import inspect
import math
import numbers
import re

__all__ = ["MAX_LR", "check_method_options", "check_value", "signature_defaults"]

#: set by the comparison itself for every method, never an option
FIXED = ("model", "split", "warm_start", "seed", "progress_bar")
#: filled in by the function that passes ``**options`` on (a value given here would clash with it)
_PASSED_ON = ("guide", "loss", "desc", "callback", "start", "start_values", "stochastic_dim", "name", "guide_fn")
#: options that are rates, step sizes or scales: finite and positive
_POSITIVE = re.compile(r"(^|_)(lr|lr_final|step_size|scale|init_scale|jitter|clip_norm|bandwidth)$")
_NO_DEFAULT = object()
#: the largest learning rate accepted: Adam moves each parameter by about lr per step, and they are of order one
MAX_LR = 1.0


@functools.cache
def _forwards():
    """Where each function sends its ``**options`` (keyed by the function); absent: not checked."""
    from pyro.infer.autoguide import AutoNormal

    from ..infer.autoguide import AutoLangevin, AutoLayerwise
    from ..infer.ltau import LTAU, LossTrajectoryRecorder
    from ..infer.svi import fit_svi
    from ..methods import (
        common,
        run_autonormal,
        run_ensemble,
        run_langevin,
        run_layerwise,
        run_layerwise_effects,
        run_lowrank,
        run_ltau,
        run_map,
        run_odenet,
        run_sdebnn,
    )
    from ..methods.sdebnn import fit_own_guide

    svi = (common.fit_guide, fit_svi)
    return {run_map: svi, run_autonormal: svi, run_lowrank: svi, run_layerwise: svi, common.fit_guide: (fit_svi,),
            run_odenet: (fit_own_guide,), run_sdebnn: (fit_own_guide,), fit_own_guide: (fit_svi,),
            run_ensemble: (run_map,), run_layerwise_effects: (run_layerwise,), run_ltau: (LTAU,),
            LTAU: (LossTrajectoryRecorder,), AutoLayerwise: (AutoNormal,), run_langevin: (AutoLangevin,)}


def _wrapped_runner(fn):
    """For a registered variant ``run(model, split, **options)`` around another runner (``Method.wraps``, e.g.
    ``run_langevin`` with ``score`` set): ``((that runner,), the keywords the variant sets)``; ``((), ())`` for
    anything else."""
    from ..methods import METHODS

    for method in METHODS.values():
        if method.wraps is not None and inspect.unwrap(method.runner) is fn:
            return (method.wraps,), tuple(method.sets)
    return (), ()


def signature_defaults(fn, exclude=()):
    """Parameter name -> default (a marker for none) of everything ``fn`` accepts as a keyword, following its
    ``**options`` to the functions it passes them to; ``None`` when that cannot be known (an unmapped
    ``**options``)."""
    fn = inspect.unwrap(fn)  # a registered runner wrapped to fill in its registered defaults takes the same keys
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    accepted, open_ended = {}, False
    for name, p in params.items():
        if p.kind == p.VAR_KEYWORD:
            targets, fixed = _forwards().get(fn), ()
            if targets is None:
                targets, fixed = _wrapped_runner(fn)
            if not targets:
                open_ended = True
                continue
            for target in targets:
                more = signature_defaults(target, exclude=tuple(exclude) + _PASSED_ON + fixed)
                if more is None:
                    return None
                for key, default in more.items():
                    accepted.setdefault(key, default)
        elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in ("self", "cls"):
            accepted[name] = _NO_DEFAULT if p.default is p.empty else p.default
    if open_ended:
        return None
    for name in tuple(exclude) + ("model", "split"):
        accepted.pop(name, None)
    return accepted


def check_value(key, value, default):
    """Check an option's ``value`` against the type of its ``default`` (and a finite positive value for rates,
    step sizes and scales); raise ``TypeError``/``ValueError`` naming ``key``."""
    def refuse(expected):
        raise TypeError(f"{key}: expected {expected}, got {value!r} ({type(value).__name__})")

    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{key}: got NaN")
    if default is _NO_DEFAULT or default is None:
        pass
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            refuse("True or False")
    elif isinstance(default, numbers.Integral):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            refuse("an integer")
        if key.startswith("num_") and value < 1 or value < 0:
            raise ValueError(f"{key}: expected an integer >= {1 if key.startswith('num_') else 0}, got {value}")
    elif isinstance(default, numbers.Real):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            refuse("a number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            refuse("a string")
    elif isinstance(default, (tuple, list)) and not isinstance(value, (tuple, list)):
        refuse("a tuple, e.g. (32, 32)")
    rate = _POSITIVE.search(key) and isinstance(value, numbers.Real) and not isinstance(value, bool)
    if rate and (not math.isfinite(value) or value <= 0):
        raise ValueError(f"{key}: expected a finite number > 0, got {value}")
    if rate and key in ("lr", "lr_final") and value > MAX_LR:
        raise ValueError(f"{key}: expected a learning rate in (0, {MAX_LR:g}] (Adam moves every parameter by about "
                         f"lr per step), got {value}")


def check_method_options(method, options):
    """Check ``options`` of the registered method ``method`` (a :class:`~pyro_node_uq.methods.Method`); raise
    ``ValueError`` naming ``<method>.<option>`` for an unknown option or a value of the wrong type."""
    accepted = signature_defaults(method.runner, exclude=FIXED)
    for key, value in options.items():
        if key in FIXED:
            raise ValueError(f"{method.name}.{key}: set by the comparison itself (--seed, --no-progress), not a "
                             "method option")
        if accepted is not None and key not in accepted:
            raise ValueError(f"{method.name}.{key}: {method.name} has no option {key!r}; its options are "
                             f"{sorted(accepted)}")
        default = accepted.get(key, _NO_DEFAULT) if accepted is not None else _NO_DEFAULT
        if key in method.defaults:
            default = method.defaults[key]
        try:
            check_value(key, value, default)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{method.name}.{e}") from None
