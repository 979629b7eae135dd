"""The methods ``torchdiffeq`` solves and the fast fixed-step path does not: adaptive, multistep and Heun's
fixed-grid methods under their ``torchdiffeq`` names (``ODESolver(method="dopri5")`` or
``ODESolver(method=Dopri5(rtol=1e-8, atol=1e-9))``).  They differ only in name, order and kind, so they are made
from one table."""
from .base import AdaptiveSolver, Solver, TorchdiffeqSolver

#: (class name, method name, order, base class, description)
_TABLE = [
    ("Dopri5", "dopri5", 5, AdaptiveSolver, "Dormand-Prince 5(4), adaptive."),
    ("Dopri8", "dopri8", 8, AdaptiveSolver, "Dormand-Prince 8(7), adaptive."),
    ("Bosh3", "bosh3", 3, AdaptiveSolver, "Bogacki-Shampine 3(2), adaptive."),
    ("Fehlberg2", "fehlberg2", 2, AdaptiveSolver, "Runge-Kutta-Fehlberg 2(1), adaptive."),
    ("AdaptiveHeun", "adaptive_heun", 2, AdaptiveSolver, "Heun-Euler 2(1), adaptive."),
    ("Heun2", "heun2", 2, TorchdiffeqSolver, "``torchdiffeq``'s fixed-grid Heun method, second order."),
    ("Heun3", "heun3", 3, TorchdiffeqSolver, "``torchdiffeq``'s fixed-grid third-order Heun method."),
    ("ExplicitAdams", "explicit_adams", None, TorchdiffeqSolver, "``torchdiffeq``'s explicit Adams-Bashforth method."),
    ("ImplicitAdams", "implicit_adams", None, TorchdiffeqSolver,
     "``torchdiffeq``'s implicit Adams-Bashforth-Moulton method."),
    ("FixedAdams", "fixed_adams", None, TorchdiffeqSolver, "``torchdiffeq``'s fixed-grid Adams method."),
]

__all__ = [row[0] for row in _TABLE] + ["ScipySolver"]

for _cls, _name, _order, _base, _doc in _TABLE:
    globals()[_cls] = type(_cls, (_base,), {"name": _name, "order": _order, "__doc__": _doc, "__module__": __name__})


class ScipySolver(TorchdiffeqSolver):
    """A SciPy integrator through ``torchdiffeq`` (choose it with ``options={"solver": ...}``); it takes no single
    steps, so no step check."""

    name = "scipy_solver"
    fixed_step = False
    step = Solver.step
