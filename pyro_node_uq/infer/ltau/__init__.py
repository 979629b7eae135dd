"""LTAU: uncertainty from per-sample loss trajectories and nearest neighbours in latent space (DESIGN.md §4)."""
from .calibration import ErrorCalibration, calibration_error
from .distribution import ErrorDistribution
from .estimator import LTAU
from .node import NODETrainingMonitor, node_errors, node_features, node_keys, node_latent
from .recorder import LossTrajectoryRecorder

__all__ = ["LTAU", "ErrorCalibration", "ErrorDistribution", "LossTrajectoryRecorder", "NODETrainingMonitor",
           "calibration_error", "node_errors", "node_features", "node_keys", "node_latent"]
