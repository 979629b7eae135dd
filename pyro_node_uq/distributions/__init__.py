"""Trajectory likelihoods and path laws."""
from .doses import DoseSchedule
from .interpolation import Interpolator
from .node_trajectory import NODETrajectory
from .sde_path import SDESolver, WeightPathFeatures, solve_weight_path
from .solve import NODEDivergenceError, ODESolver, current_divergence_policy, divergence_policy

__all__ = ["DoseSchedule", "Interpolator", "NODEDivergenceError", "NODETrajectory", "ODESolver", "SDESolver", "WeightPathFeatures",
           "current_divergence_policy", "divergence_policy", "solve_weight_path"]
