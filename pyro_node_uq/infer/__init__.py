"""Inference: SVI fitting helpers, guides and kernels."""
from .autoguide import AutoLangevin
from .svi import FitResult, fit_map, fit_svi

__all__ = ["AutoLangevin", "FitResult", "fit_map", "fit_svi"]
