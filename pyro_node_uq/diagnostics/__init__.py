"""Diagnostics: predictive scores, ArviZ conversion and plots."""
from .arviz import (
    mcmc_to_inference_data,
    model_inference_data,
    pointwise_log_likelihood,
    to_inference_data,
)
from .classification import (
    classification_scores,
    expected_calibration_error,
    predictive_entropy,
    reliability,
)
from .metrics import (
    LEVELS,
    calibration_curve,
    crps,
    crps_normal_mixture,
    energy_distance,
    interval_coverage,
    predictive_nll,
    rmse,
    score,
)
from .plots import plot_calibration, plot_trajectories, plot_weights

__all__ = ["LEVELS", "calibration_curve", "classification_scores", "crps", "crps_normal_mixture", "energy_distance",
           "expected_calibration_error", "interval_coverage", "mcmc_to_inference_data", "model_inference_data",
           "plot_calibration", "plot_trajectories", "plot_weights", "pointwise_log_likelihood", "predictive_entropy",
           "predictive_nll", "reliability", "rmse", "score", "to_inference_data"]
