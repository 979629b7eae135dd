"""One ODE solve for a whole ensemble: the solver's options and divergence detection."""
from dataclasses import dataclass, field

import torch
import torchdiffeq
from pyro.ops.integrator import register_exception_handler

from . import step_check
from .solve_path import BACKWARDS, GRID_PATHS, select
from .solver_options import SolverOptions
from .solvers import SOLVERS, Solver, get_solver

__all__ = ["NODEDivergenceError", "ODESolver"]


class NODEDivergenceError(RuntimeError):
    """Raised when an ODE solve produces non-finite or exploding states.

    Registered with ``pyro.ops.integrator.register_exception_handler``: Pyro's HMC and NUTS (and this package's
    kernel and guides) count a proposal whose solve raises it as a divergence instead of aborting the run."""


register_exception_handler("pyro_node_uq.NODEDivergenceError", lambda e: isinstance(e, NODEDivergenceError))


@dataclass
class ODESolver(SolverOptions):
    """Options of the ODE solve shared by every NODE distribution.

    :param method: a solver object (``RK4()``, ``Midpoint()``, ``Dopri5(rtol, atol)``..., see
        :mod:`~pyro_node_uq.distributions.solvers`) or its name (``"rk4"``, ``"dopri5"``...); stored as the name.
        A solver object's own tolerances replace ``rtol`` and ``atol``.
    :param float rtol: relative tolerance (adaptive methods).
    :param float atol: absolute tolerance (adaptive methods).
    :param float step_size: fixed step for fixed-step methods, solved by ``torchdiffeq``; ``None`` steps on the
        observation times.
    :param bool adjoint: shorthand for ``backward="adjoint"``.
    :param float max_abs: states larger than this in absolute value count as diverged.
    :param dict options: extra ``torchdiffeq`` options; adaptive methods get ``max_num_steps`` 1000 steps per
        interval between output times by default (a solve that needs more raises :class:`NODEDivergenceError`
        naming the time reached), raise it with ``{"max_num_steps": 100000}``.
    :param bool step_check: after a fixed-step solve, warn (:class:`~pyro_node_uq.distributions.step_check.
        StepSizeWarning`, once per solve) when a step-doubling check shows the step far above the stable step.
    :param str backend: ``"auto"`` solves explicit Runge-Kutta methods (those with a tableau: ``"euler"``,
        ``"midpoint"``, ``"rk4"``...) on the observation grid with the fast fixed-step path of
        :mod:`~pyro_node_uq.distributions.fixed_grid` (without ``step_size`` or the adjoint) and everything else
        with ``torchdiffeq``; ``"fixed"`` insists on the fast path; ``"torchdiffeq"`` always uses ``torchdiffeq``.
    :param int substeps: equal fixed steps per observation interval (both back-ends).
    :param compile: fast path only: ``False`` (eager), ``True`` (``torch.compile`` each new shape at its first
        solve) or ``"auto"`` (compile a shape after it has been solved a few times; one-off solves stay eager).
    :param str backward: the backward pass: ``"auto"`` (the hand-written discrete adjoint where it applies, else
        autograd), ``"discrete_adjoint"`` (insist on it), ``"autograd"`` or ``"adjoint"`` (``torchdiffeq``'s
        continuous adjoint); :func:`~pyro_node_uq.distributions.solve_path.select` says which path runs.

    Example::

        >>> from pyro_node_uq.distributions.solvers import Dopri5
        >>> solver = ODESolver(method=Dopri5(rtol=1e-8, atol=1e-9))
        >>> solver.method, solver.rtol, solver.scheme
        ('dopri5', 1e-08, Dopri5(rtol=1e-08, atol=1e-09))
        >>> ODESolver(backward="autograd").path(), ODESolver.coerce({"method": "dopri5"}).path()
        ('autograd', 'torchdiffeq')
    """

    method: object = "rk4"
    rtol: float = 1e-6
    atol: float = 1e-7
    step_size: float = None
    adjoint: bool = False
    max_abs: float = 1e6
    options: dict = field(default_factory=dict)
    step_check: bool = True
    backend: str = "auto"
    substeps: int = 1
    compile: object = False
    backward: str = "auto"

    _coerce_hint = " (or a solver object such as RK4())"

    @classmethod
    def _from_other(cls, solver):
        return cls(method=solver) if isinstance(solver, Solver) else None

    def _check(self):
        from ..validation import check_choice, check_int, check_positive

        if isinstance(self.method, Solver):
            scheme, self.method = self.method, self.method.name
            self.rtol = self.rtol if getattr(scheme, "rtol", None) is None else scheme.rtol
            self.atol = self.atol if getattr(scheme, "atol", None) is None else scheme.atol
        get_solver(self.method)  # a known name
        try:
            self.rtol, self.atol = check_positive(self.rtol, "rtol"), check_positive(self.atol, "atol")
            if self.step_size is not None:
                self.step_size = check_positive(self.step_size, "step_size")
        except (TypeError, ValueError) as e:
            raise type(e)(f"ODESolver: {e}") from None
        if not isinstance(self.options, dict):
            raise TypeError(f"ODESolver: options must be a dict of torchdiffeq options, got {self.options!r}")
        if "max_num_steps" in self.options:
            check_int(self.options["max_num_steps"], "solver.options['max_num_steps']", 1)
        check_choice(self.backward, "ODESolver: backward", BACKWARDS)
        if self.adjoint and self.backward not in ("auto", "adjoint"):
            raise ValueError(f"ODESolver: adjoint=True is backward='adjoint', not backward={self.backward!r}")
        self.backward = "adjoint" if self.adjoint else self.backward
        self.adjoint = self.backward == "adjoint"
        if self.backend not in ("auto", "fixed", "torchdiffeq"):
            raise ValueError(f"ODESolver: backend must be 'auto', 'fixed' or 'torchdiffeq', got {self.backend!r}")
        scheme = self.scheme
        if self.backend == "fixed" and (scheme.tableau is None or self.adjoint or self.step_size):
            raise ValueError(f"ODESolver: backend='fixed' needs method with a Runge-Kutta tableau "
                             f"({sorted(n for n, c in SOLVERS.items() if c.tableau)}) without adjoint or step_size, got method={self.method!r}, adjoint={self.adjoint}, "
                             f"step_size={self.step_size}")
        if scheme.torchdiffeq is None and (self.backend == "torchdiffeq" or self.adjoint or self.step_size):
            raise ValueError(f"ODESolver: method {self.method!r} is solved on the fast fixed-step path only, without "
                             f"backend='torchdiffeq', adjoint or step_size")
        if self.backward == "discrete_adjoint" and scheme.tableau is None:
            raise ValueError(f"ODESolver: backward='discrete_adjoint' needs an explicit Runge-Kutta method (one "
                             f"with a tableau), got method={self.method!r}")
        if not (isinstance(self.substeps, int) and self.substeps >= 1):
            raise ValueError(f"ODESolver: substeps must be an integer >= 1, got {self.substeps!r}")
        if self.substeps > 1 and (not scheme.fixed_step or self.step_size is not None):
            raise ValueError(f"ODESolver: substeps needs a fixed-step method without step_size, got "
                             f"method={self.method!r}, step_size={self.step_size}")
        if self.compile not in (False, True, "auto"):
            raise ValueError(f"ODESolver: compile must be False, True or 'auto', got {self.compile!r}")

    @property
    def scheme(self):
        """The solver object of ``method`` (adaptive ones with this solver's tolerances)."""
        return get_solver(self.method, rtol=self.rtol, atol=self.atol)

    def path(self, field=None, **context):
        """The execution path of a solve with these options (:func:`~pyro_node_uq.distributions.solve_path.select`
        with ``field`` and ``context``)."""
        return select(self, field, **context)

    @property
    def fixed_grid(self):
        """Whether the fast fixed-step path on the observation grid solves (see ``backend``)."""
        return self.path() in GRID_PATHS

    def odeint(self, func, y0, t, params=()):
        """Integrate ``dy/dt = func(t, y)`` from ``y0`` at times ``t`` with ``torchdiffeq``; returns
        ``(len(t),) + y0.shape``.

        :param params: tensors ``func`` closes over, needed by the adjoint to return their gradients.
        """
        scheme = self.scheme
        options = dict(self.options)
        if scheme.fixed_step and self.step_size is not None:
            options.setdefault("step_size", step_check.check_step_count(t, self.step_size))
        if scheme.adaptive:
            options.setdefault("max_num_steps", step_check.DEFAULT_MAX_NUM_STEPS)
        if self.substeps > 1:  # the same grid as the fast path
            options.setdefault("grid_constructor", lambda f, y0, ts: _substep_grid(ts, self.substeps))
        kwargs = {"method": scheme.torchdiffeq, "rtol": self.rtol, "atol": self.atol, "options": options or None}
        tracked = step_check.TrackTime(func)
        try:
            if self.adjoint:
                adjoint_params = tuple(p for p in params if torch.is_tensor(p) and p.requires_grad)
                out = torchdiffeq.odeint_adjoint(tracked, y0, t, adjoint_params=adjoint_params, **kwargs)
            else:
                out = torchdiffeq.odeint(tracked, y0, t, **kwargs)
        except AssertionError as e:  # torchdiffeq signals step-size underflow and the step budget with assertions
            if "max_num_steps" in str(e):
                raise NODEDivergenceError(
                    f"ODE solve with method {self.method!r} used its {options['max_num_steps']} steps between two "
                    f"output times and stopped at t={tracked.reached():.6g} (output times {float(t[0]):.6g} to "
                    f"{float(t[-1]):.6g}): the vector field is very stiff or diverging. Use smaller prior scales "
                    "or a better initialisation, or raise the limit with solver={'options': {'max_num_steps': N}}"
                ) from e
            raise NODEDivergenceError(f"ODE solve with method {self.method!r} failed: {e}") from e
        if scheme.fixed_step and self.step_check:
            step_check.check_fixed_step(func, out, t, self.method, options.get("step_size", None))
        return out


def _substep_grid(t, substeps):
    """The fast path's step grid for ``torchdiffeq``: every observation interval cut into ``substeps`` equal
    steps (the same floating-point step starts as :func:`~pyro_node_uq.distributions.fixed_grid.stage_times`)."""
    frac = torch.arange(substeps, dtype=t.dtype, device=t.device) / substeps
    starts = t[:-1, None] + (t[1:] - t[:-1])[:, None] * frac
    return torch.cat([starts.reshape(-1), t[-1:]])
