"""LTAU: uncertainty from per-sample loss trajectories and nearest neighbours in latent space."""
from .calibration import ErrorCalibration, calibration_error, default_memories
from .distribution import ErrorDistribution
from .estimator import LTAU
from .memory import memory_weights
from .node import (
    NODETrainingMonitor,
    node_errors,
    node_features,
    node_keys,
    node_latent,
)
from .recorder import LossTrajectoryRecorder

__all__ = ["LTAU", "ErrorCalibration", "ErrorDistribution", "LossTrajectoryRecorder", "NODETrainingMonitor",
           "calibration_error", "default_memories", "memory_weights", "node_errors", "node_features", "node_keys",
           "node_latent"]
