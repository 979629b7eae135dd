"""Inference algorithms: guides, kernels, the SVI loop, SVGD, LTAU and the shared log joint.  The comparable
methods built from them (runners with defaults and warm starts) are in :mod:`pyro_node_uq.methods`."""
from .autoguide import AutoLangevin, AutoLangevinMixture, AutoLayerwise
from .counting import CountingModel
from .curvature import laplace_widths, log_joint_hessian
from .log_joint import LogJoint
from .log_joint_nuts import LogJointNUTS
from .ltau import LTAU, LossTrajectoryRecorder
from .mcmc import LangevinKernel, particles_to_chains
from .polish import PolishResult, polish_lbfgs
from .svgd import ParticleSVGD
from .svi import FitResult, GuardedSVI, fit_svi

__all__ = [
           "LTAU",
           "AutoLangevin",
           "AutoLangevinMixture",
           "AutoLayerwise",
           "CountingModel",
           "FitResult",
           "GuardedSVI",
           "LangevinKernel",
           "LogJoint",
           "LogJointNUTS",
           "LossTrajectoryRecorder",
           "ParticleSVGD",
           "PolishResult",
           "fit_svi",
           "laplace_widths",
           "log_joint_hessian",
           "particles_to_chains",
           "polish_lbfgs",
]
