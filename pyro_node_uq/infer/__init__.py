"""Inference: SVI fitting helpers, guides and kernels."""
from .ltau import LTAU, LossTrajectoryRecorder
from .svi import FitResult, fit_map, fit_svi

__all__ = ["FitResult", "LTAU", "LossTrajectoryRecorder", "fit_map", "fit_svi"]
