"""Inference: SVI fitting helpers, guides and kernels."""
from .svi import FitResult, fit_map, fit_svi

__all__ = ["FitResult", "fit_map", "fit_svi"]
