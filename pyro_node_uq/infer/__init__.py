"""Inference: SVI fitting helpers, guides and kernels."""
from .autoguide import AutoLangevin
from .ltau import LTAU, LossTrajectoryRecorder
from .svi import FitResult, fit_map, fit_svi

__all__ = ["AutoLangevin", "FitResult", "LTAU", "LossTrajectoryRecorder", "fit_map", "fit_svi"]
