"""The solver objects: a Butcher tableau, the base class that registers every solver by name, and the two kinds
of solver, explicit Runge-Kutta methods defined by their tableau and methods delegated to ``torchdiffeq``.

A solver object says what a method IS (its name, order, tableau and what it can do); how a solve runs (back-end,
backward pass, substeps, compile) is the business of :class:`~pyro_node_uq.distributions.ODESolver` and
:func:`~pyro_node_uq.distributions.select.select`.  Defining a subclass with a ``name`` registers it in
:data:`SOLVERS`, so that ``ODESolver(method=name)``, the fast fixed-step solve, the step check and the docs find it.
"""
from dataclasses import dataclass

import torch

__all__ = ["SOLVERS", "AdaptiveSolver", "ExplicitRK", "Solver", "Tableau", "TorchdiffeqSolver", "get_solver"]

#: every registered solver class, by method name
SOLVERS = {}


@dataclass(frozen=True)
class Tableau:
    """The Butcher tableau of an explicit Runge-Kutta method.

    :param tuple c: stage times as fractions of the step, ``c[0] == 0``.
    :param tuple a: rows of the strictly lower triangular matrix, row ``i`` holding ``a_i0 .. a_i(i-1)``.
    :param tuple b: the weights of the stages in the update.
    """

    c: tuple
    a: tuple
    b: tuple

    @property
    def stages(self):
        return len(self.b)

    def check(self, tol=1e-12):
        """Raise ``ValueError`` unless the tableau is consistent: explicit shape, ``c[0] = 0``, each row of ``a``
        summing to its ``c`` and the weights summing to one."""
        S = self.stages
        if len(self.c) != S or len(self.a) != S or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"Tableau: expected {S} stage times and rows of a of lengths 0..{S - 1}, got c={self.c}, "
                             f"a={self.a}")
        if self.c[0] != 0.0:
            raise ValueError(f"Tableau: the first stage must sit at the step's start, got c[0]={self.c[0]}")
        for i, (ci, row) in enumerate(zip(self.c, self.a)):
            if abs(sum(row) - ci) > tol:
                raise ValueError(f"Tableau: row {i} of a sums to {sum(row)}, not c[{i}]={ci}")
        if abs(sum(self.b) - 1.0) > tol:
            raise ValueError(f"Tableau: the weights b sum to {sum(self.b)}, not 1")
        return self


class Solver:
    """Base class of the ODE solvers.  A subclass with a ``name`` is registered in :data:`SOLVERS`.

    Class attributes (capabilities): ``name`` (the method name), ``order``, ``tableau`` (a :class:`Tableau` for
    explicit Runge-Kutta methods, which the fast fixed-step solve and its hand-written gradient can run, else
    ``None``), ``fixed_step`` (steps of a given width: the step check applies), ``adaptive`` (error-controlled steps:
    tolerances and a step budget apply) and ``torchdiffeq`` (the ``torchdiffeq`` method that solves it, or ``None``
    for a method only the fast fixed-step solve runs).
    """

    name = None
    order = None
    tableau = None
    fixed_step = True
    adaptive = False
    torchdiffeq = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            if cls.name in SOLVERS:
                raise ValueError(f"solver {cls.name!r} is registered twice ({SOLVERS[cls.name].__name__}, "
                                 f"{cls.__name__})")
            if cls.tableau is not None:
                cls.tableau.check()
            SOLVERS[cls.name] = cls
            cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n    " + cls.summary()

    @classmethod
    def summary(cls):
        """One line for the docs, made from the class attributes: name, order, where it is solved, tableau."""
        where = []
        if cls.tableau is not None:
            where.append("on the fast fixed-step path")
        if cls.torchdiffeq:
            where.append(f"by ``torchdiffeq`` as ``{cls.torchdiffeq!r}``")
        order = f"order {cls.order}, " if cls.order else ""
        line = f"Registered as ``{cls.name!r}`` ({order}solved {' and '.join(where)})."
        if cls.tableau is not None:
            tab = cls.tableau

            def fmt(v):
                return "(" + ", ".join(f"{x:.6g}" for x in v) + ")"

            line += (f" Tableau: ``c = {fmt(tab.c)}``, ``a = ({', '.join(fmt(r) for r in tab.a[1:])})``, "
                     f"``b = {fmt(tab.b)}``.")
        return line

    def step(self, func, y, t0, h):
        """One step of width ``h`` of ``dy/dt = func(t, y)`` from ``y`` at ``t0`` (the step check's unit)."""
        raise NotImplementedError(f"{type(self).__name__} takes no single steps")

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), tuple(sorted(vars(self).items()))))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class ExplicitRK(Solver):
    """An explicit Runge-Kutta method given by its ``tableau``: solved by the fast fixed-step path (with the
    hand-written discrete adjoint for a ``tanh`` field), or by ``torchdiffeq`` under its ``torchdiffeq`` name."""

    def step(self, func, y, t0, h):
        """``y + h sum_i b_i k_i`` with ``k_i = func(t0 + c_i h, y + h sum_j a_ij k_j)``."""
        tab, ks = self.tableau, []
        for c, row in zip(tab.c, tab.a):
            yi = y
            for a, k in zip(row, ks):
                if a != 0.0:
                    yi = yi + (h * a) * k
            ks.append(func(t0 + h if c == 1.0 else t0 + c * h, yi))
        return y + sum((h * b) * k for b, k in zip(tab.b, ks) if b != 0.0)


class TorchdiffeqSolver(Solver):
    """A fixed-step method that ``torchdiffeq`` solves (``name`` is its ``torchdiffeq`` name)."""

    def __init_subclass__(cls, **kwargs):
        cls.torchdiffeq = cls.__dict__.get("torchdiffeq") or cls.__dict__.get("name")
        super().__init_subclass__(**kwargs)

    def step(self, func, y, t0, h):
        import torchdiffeq

        grid = torch.stack([t0, t0 + h])
        return torchdiffeq.odeint(func, y, grid, method=self.torchdiffeq, options={"step_size": h})[-1]


class AdaptiveSolver(TorchdiffeqSolver):
    """An error-controlled ``torchdiffeq`` method.  ``rtol`` and ``atol`` (``None``: those of the
    :class:`~pyro_node_uq.distributions.ODESolver` it is given to) set its tolerances."""

    fixed_step = False
    adaptive = True

    def __init__(self, rtol=None, atol=None):
        self.rtol, self.atol = rtol, atol


def get_solver(method, **tolerances):
    """The solver object for ``method`` (a name of :data:`SOLVERS` or a :class:`Solver`); adaptive ones get
    ``tolerances`` (``rtol``, ``atol``)."""
    if isinstance(method, Solver):
        return method
    if not isinstance(method, str) or method not in SOLVERS:
        raise ValueError(f"solver.method: expected one of {sorted(SOLVERS)} or a Solver object, got {method!r}")
    cls = SOLVERS[method]
    return cls(**tolerances) if cls.adaptive else cls()
