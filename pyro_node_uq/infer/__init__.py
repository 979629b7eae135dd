"""Inference: SVI fitting helpers, baselines (MAP, VI, NUTS, SVGD), guides and kernels."""
from .autoguide import AutoLangevin, AutoLayerwise
from .baselines import estimate_elbo, latent_dim, map_values, run_autonormal, run_lowrank, run_map
from .counting import CountingModel
from .langevin_runner import run_langevin
from .individual import ConditionedEffects, condition_effects, predict_units
from .layerwise import run_layerwise
from .ltau import LTAU, LossTrajectoryRecorder
from .mcmc import LangevinKernel, particles_to_chains, run_langevin_kernel
from .nuts import SamplerStats, run_nuts
from .result import MethodResult, guide_samples, param_scope
from .svgd import ParticleSVGD, run_svgd
from .svi import FitResult, GuardedSVI, fit_map, fit_svi

__all__ = ["AutoLangevin", "AutoLayerwise", "ConditionedEffects", "CountingModel", "FitResult", "GuardedSVI", "LTAU", "LangevinKernel",
           "LossTrajectoryRecorder", "MethodResult", "ParticleSVGD", "SamplerStats", "estimate_elbo", "fit_map",
           "fit_svi", "guide_samples", "latent_dim", "map_values", "param_scope", "particles_to_chains", "condition_effects", "predict_units",
           "run_autonormal", "run_langevin", "run_langevin_kernel", "run_layerwise", "run_lowrank", "run_map",
           "run_nuts", "run_svgd"]
