"""pyro-node-uq: Bayesian uncertainty quantification for neural-ODE models of history-dependent processes."""
from . import data, distributions, infer, models, nn

__version__ = "0.1.0"
__all__ = ["__version__", "data", "distributions", "infer", "models", "nn"]
