"""The methods ``torchdiffeq`` solves and the fast fixed-step path does not: adaptive, multistep and Heun's
fixed-grid methods under their ``torchdiffeq`` names (``ODESolver(method="dopri5")`` or
``ODESolver(method=Dopri5(rtol=1e-8, atol=1e-9))``)."""
from .base import AdaptiveSolver, TorchdiffeqSolver

__all__ = ["Dopri5", "Dopri8", "Bosh3", "Fehlberg2", "AdaptiveHeun", "Heun2", "Heun3", "ExplicitAdams",
           "ImplicitAdams", "FixedAdams", "ScipySolver"]


class Dopri5(AdaptiveSolver):
    """Dormand-Prince 5(4), adaptive."""
    name, order = "dopri5", 5


class Dopri8(AdaptiveSolver):
    """Dormand-Prince 8(7), adaptive."""
    name, order = "dopri8", 8


class Bosh3(AdaptiveSolver):
    """Bogacki-Shampine 3(2), adaptive."""
    name, order = "bosh3", 3


class Fehlberg2(AdaptiveSolver):
    """Runge-Kutta-Fehlberg 2(1), adaptive."""
    name, order = "fehlberg2", 2


class AdaptiveHeun(AdaptiveSolver):
    """Heun-Euler 2(1), adaptive."""
    name, order = "adaptive_heun", 2


class Heun2(TorchdiffeqSolver):
    """``torchdiffeq``'s fixed-grid Heun method, second order (always solved by ``torchdiffeq``)."""
    name, order = "heun2", 2


class Heun3(TorchdiffeqSolver):
    """``torchdiffeq``'s fixed-grid third-order Heun method."""
    name, order = "heun3", 3


class ExplicitAdams(TorchdiffeqSolver):
    """``torchdiffeq``'s explicit Adams-Bashforth multistep method."""
    name = "explicit_adams"


class ImplicitAdams(TorchdiffeqSolver):
    """``torchdiffeq``'s implicit Adams-Bashforth-Moulton multistep method."""
    name = "implicit_adams"


class FixedAdams(TorchdiffeqSolver):
    """``torchdiffeq``'s fixed-grid Adams method."""
    name = "fixed_adams"


class ScipySolver(TorchdiffeqSolver):
    """A SciPy integrator through ``torchdiffeq`` (choose it with ``options={"solver": ...}``); it takes no single
    steps, so no step check."""
    name = "scipy_solver"
    fixed_step = False
