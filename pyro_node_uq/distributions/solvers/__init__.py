"""ODE solvers as objects carrying their tableau and capabilities, one registry of them by method name.

Every module of this package defines solver classes; importing the package imports them all, and each class with a
``name`` registers itself in :data:`~pyro_node_uq.distributions.solvers.base.SOLVERS`.  A new explicit Runge-Kutta
method is one file here with a subclass of :class:`~pyro_node_uq.distributions.solvers.base.ExplicitRK` and its
:class:`~pyro_node_uq.distributions.solvers.base.Tableau`: ``ODESolver(method=...)``, the fast fixed-step solve with
its hand-written gradient, the step check, the tests parametrised over the registry and this page pick it up.

Example::

    >>> from pyro_node_uq.distributions import ODESolver
    >>> ODESolver(method=RK4()).method, ODESolver(method=Dopri5(rtol=1e-8, atol=1e-9)).rtol
    ('rk4', 1e-08)
"""
import importlib
import pkgutil

from .base import (
    SOLVERS,
    AdaptiveSolver,
    ExplicitRK,
    Solver,
    Tableau,
    TorchdiffeqSolver,
    get_solver,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
globals().update({cls.__name__: cls for cls in SOLVERS.values()})

__all__ = ["SOLVERS", "AdaptiveSolver", "ExplicitRK", "Solver", "Tableau", "TorchdiffeqSolver", "get_solver"]
__all__.extend(sorted(cls.__name__ for cls in SOLVERS.values()))
