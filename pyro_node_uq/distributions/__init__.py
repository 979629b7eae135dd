"""Trajectory likelihoods and path laws."""
from .interpolation import Interpolator
from .node_trajectory import NODETrajectory
from .solve import NODEDivergenceError, ODESolver

__all__ = ["Interpolator", "NODEDivergenceError", "NODETrajectory", "ODESolver"]
