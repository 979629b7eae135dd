"""Trajectory likelihoods and path laws."""
from .doses import DoseSchedule
from .interpolation import Interpolator
from .node_solve import NODESolution, solve_node
from .node_trajectory import NODETrajectory
from .observation import ERROR_MODELS, ErrorModel, NODEObservation
from .sde_path import SDESolver, WeightPathFeatures, solve_weight_path
from .solve import NODEDivergenceError, ODESolver
from .solve_path import select
from .solver_options import SolverOptions

__all__ = [
           "ERROR_MODELS",
           "DoseSchedule",
           "ErrorModel",
           "Interpolator",
           "NODEDivergenceError",
           "NODEObservation",
           "NODESolution",
           "NODETrajectory",
           "ODESolver",
           "SDESolver",
           "SolverOptions",
           "WeightPathFeatures",
           "select",
           "solve_node",
           "solve_weight_path",
]
