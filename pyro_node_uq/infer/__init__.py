"""Inference: SVI fitting helpers, guides and kernels."""
from .mcmc import LangevinKernel, particles_to_chains
from .svi import FitResult, fit_map, fit_svi

__all__ = ["FitResult", "LangevinKernel", "fit_map", "fit_svi", "particles_to_chains"]
