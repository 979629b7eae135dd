"""MCMC kernels for ``pyro.infer.MCMC``."""
from .langevin_kernel import LangevinKernel, particles_to_chains
from .runner import run_langevin_kernel

__all__ = ["LangevinKernel", "particles_to_chains", "run_langevin_kernel"]
