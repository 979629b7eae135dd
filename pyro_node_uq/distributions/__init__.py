"""Trajectory likelihoods and path laws."""
from .interpolation import Interpolator
from .node_trajectory import NODETrajectory
from .sde_path import SDESolver, WeightPathFeatures, solve_weight_path
from .solve import NODEDivergenceError, ODESolver, current_divergence_policy, divergence_policy

__all__ = ["Interpolator", "NODEDivergenceError", "NODETrajectory", "ODESolver", "SDESolver", "WeightPathFeatures",
           "current_divergence_policy", "divergence_policy", "solve_weight_path"]
