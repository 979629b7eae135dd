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

from .common import as_process_model, carry_model_params, estimate_elbo, latent_dim, map_values
from .convergence import BudgetExhaustedWarning, Convergence, StoppingRule
from .individual import ConditionedEffects, condition_effects, predict_units
from .multistart import best_start
from .registry import METHODS, Method, MethodSkipped, demo_methods, register, resolve_methods
from .result import MethodResult, guide_samples
# the methods, in the order of the comparison table
from .map import run_map
from .ltau import run_ltau
from .autonormal import run_autonormal
from .lowrank import run_lowrank
from .langevin import run_langevin
from .layerwise import run_layerwise, run_layerwise_effects
from .langevin_kernel import run_langevin_kernel
from .nuts import SamplerStats, run_nuts
from .svgd import run_svgd
from .ensemble import run_ensemble
from .chains import run_chains
from .sdebnn import run_sdebnn
from .odenet import run_odenet

_SUPPORT = {"common", "convergence", "individual", "multistart", "registry", "result"}
for _info in pkgutil.iter_modules(__path__):  # a method added as a new module registers itself here
    if _info.name not in _SUPPORT and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
del _info

__all__ = ["ConditionedEffects", "METHODS", "BudgetExhaustedWarning", "Convergence", "Method", "MethodResult",
           "MethodSkipped", "SamplerStats", "StoppingRule", "as_process_model", "best_start", "carry_model_params",
           "condition_effects", "demo_methods", "estimate_elbo", "guide_samples", "latent_dim", "map_values",
           "predict_units", "register", "resolve_methods", "run_autonormal", "run_chains", "run_ensemble",
           "run_langevin", "run_langevin_kernel", "run_layerwise", "run_layerwise_effects", "run_lowrank", "run_ltau",
           "run_map", "run_nuts", "run_odenet", "run_sdebnn", "run_svgd"]
