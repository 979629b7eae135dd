"""MCMC kernels for ``pyro.infer.MCMC``."""
from .langevin_kernel import LangevinKernel, particles_to_chains

__all__ = ["LangevinKernel", "particles_to_chains"]
