"""Comparable inference methods: one module per method, each a runner
``run_<name>(model, split, *, warm_start=None, **options) -> MethodResult`` that registers itself (with its
defaults, quick options and the method it starts from) in :data:`METHODS`.

Adding a method is one new module in this package: every module here is imported (and so registered) when the
package is.

Example::

    >>> from pyro_node_uq.methods import METHODS
    >>> METHODS["autonormal"].start, METHODS["map"].options("chemical", quick=True)["num_steps"]
    ('map', 150)
"""
import importlib
import pkgutil

from .autonormal import run_autonormal
from .chains import run_chains
from .common import (
    as_process_model,
    carry_model_params,
    estimate_elbo,
    latent_dim,
    map_values,
)
from .convergence import BudgetExhaustedWarning, Convergence, StoppingRule
from .ensemble import run_ensemble
from .individual import ConditionedEffects, condition_effects, predict_units
from .langevin import run_langevin
from .langevin_kernel import run_langevin_kernel
from .langevin_mixture import run_langevin_mixture
from .layerwise import run_layerwise, run_layerwise_effects
from .lowrank import run_lowrank
from .ltau import run_ltau

# the methods, in the order of the comparison table
from .map import run_map
from .multistart import best_start
from .nuts import SamplerStats, run_nuts
from .odenet import run_odenet
from .registry import (
    METHODS,
    GuideRecipe,
    Method,
    MethodSkipped,
    demo_methods,
    fit_guides,
    register,
    resolve_methods,
)
from .result import MethodResult, conditioned_trace, guide_samples
from .sdebnn import run_sdebnn
from .svgd import run_svgd

_SUPPORT = {"common", "convergence", "individual", "multistart", "registry", "result"}
for _info in pkgutil.iter_modules(__path__):  # a method added as a new module registers itself here
    if _info.name not in _SUPPORT and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
del _info

__all__ = [
    "METHODS",
    "BudgetExhaustedWarning",
    "ConditionedEffects",
    "Convergence",
    "GuideRecipe",
    "Method",
    "MethodResult",
    "MethodSkipped",
    "SamplerStats",
    "StoppingRule",
    "as_process_model",
    "best_start",
    "carry_model_params",
    "condition_effects",
    "conditioned_trace",
    "demo_methods",
    "estimate_elbo",
    "fit_guides",
    "guide_samples",
    "latent_dim",
    "map_values",
    "predict_units",
    "register",
    "resolve_methods",
    "run_autonormal",
    "run_chains",
    "run_ensemble",
    "run_langevin",
    "run_langevin_kernel",
    "run_langevin_mixture",
    "run_layerwise",
    "run_layerwise_effects",
    "run_lowrank",
    "run_ltau",
    "run_map",
    "run_nuts",
    "run_odenet",
    "run_sdebnn",
    "run_svgd",
]
