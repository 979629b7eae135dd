"""One ODE solve for a whole ensemble: the NODE vector field, solver options and divergence detection."""
from dataclasses import asdict, dataclass, field

import torch
import torchdiffeq
from pyro.ops.integrator import register_exception_handler

from . import step_check
from .fixed_grid import FIXED_METHODS, stage_times
from .step_check import check_solver_options

__all__ = ["ODESolver", "NODEDivergenceError"]

_FIXED = {"euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams"}


class NODEDivergenceError(RuntimeError):
    """Raised when an ODE solve produces non-finite or exploding states.

    Registered with ``pyro.ops.integrator.register_exception_handler``: Pyro's HMC and NUTS (and this package's
    kernel and guides) count a proposal whose solve raises it as a divergence instead of aborting the run."""


register_exception_handler("pyro_node_uq.NODEDivergenceError", lambda e: isinstance(e, NODEDivergenceError))


@dataclass
class ODESolver:
    """Options of the ``torchdiffeq`` solve shared by every NODE distribution.

    :param str method: any ``torchdiffeq`` method (``"rk4"``, ``"dopri5"``, ``"bosh3"``, ...).
    :param float rtol: relative tolerance (adaptive methods).
    :param float atol: absolute tolerance (adaptive methods).
    :param float step_size: fixed step for fixed-grid methods; ``None`` steps on the observation times.
    :param bool adjoint: use ``odeint_adjoint`` (memory constant in the number of time points).
    :param float max_abs: states larger than this in absolute value count as diverged.
    :param dict options: extra ``torchdiffeq`` options; adaptive methods get ``max_num_steps`` 1000 steps per
        interval between output times by default (a solve that needs more raises :class:`NODEDivergenceError`
        naming the time reached), raise it with ``{"max_num_steps": 100000}``.
    :param bool step_check: after a fixed-step solve, warn (:class:`~pyro_node_uq.distributions.step_check.
        StepSizeWarning`, once per solve) when a step-doubling check shows the step far above the stable step.
    :param str backend: ``"auto"`` solves ``"euler"``, ``"midpoint"`` and ``"rk4"`` on the observation grid with
        the fast fixed-step path of :mod:`~pyro_node_uq.distributions.fixed_grid` (without ``step_size`` or
        ``adjoint``) and everything else with ``torchdiffeq``; ``"fixed"`` insists on the fast path;
        ``"torchdiffeq"`` always uses ``torchdiffeq``.
    :param int substeps: equal fixed steps per observation interval (both back-ends).
    :param compile: fast path only: ``False`` (eager), ``True`` (``torch.compile`` each new shape at its first
        solve) or ``"auto"`` (compile a shape after it has been solved 20 times; one-off solves stay eager).
    """

    method: str = "rk4"
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

    def __post_init__(self):
        check_solver_options(self)
        if self.backend not in ("auto", "fixed", "torchdiffeq"):
            raise ValueError(f"ODESolver: backend must be 'auto', 'fixed' or 'torchdiffeq', got {self.backend!r}")
        if self.backend == "fixed" and (self.method not in FIXED_METHODS or self.adjoint or self.step_size):
            raise ValueError(f"ODESolver: backend='fixed' needs method in {sorted(FIXED_METHODS)} without adjoint "
                             f"or step_size, got method={self.method!r}, adjoint={self.adjoint}, "
                             f"step_size={self.step_size}")
        if not (isinstance(self.substeps, int) and self.substeps >= 1):
            raise ValueError(f"ODESolver: substeps must be an integer >= 1, got {self.substeps!r}")
        if self.substeps > 1 and (self.method not in _FIXED or self.step_size is not None):
            raise ValueError(f"ODESolver: substeps needs a fixed-step method without step_size, got "
                             f"method={self.method!r}, step_size={self.step_size}")
        if self.compile not in (False, True, "auto"):
            raise ValueError(f"ODESolver: compile must be False, True or 'auto', got {self.compile!r}")

    @classmethod
    def coerce(cls, solver):
        """Accept an :class:`ODESolver`, a dict of its fields, or ``None`` (defaults)."""
        if solver is None:
            return cls()
        if isinstance(solver, cls):
            return solver
        if isinstance(solver, dict):
            unknown = set(solver) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"solver: unknown options {sorted(unknown)}; "
                                 f"known are {sorted(cls.__dataclass_fields__)}")
            return cls(**solver)
        raise TypeError(f"solver must be an ODESolver, a dict or None, got {type(solver).__name__}")

    def to_dict(self):
        return asdict(self)

    @property
    def fixed_grid(self):
        """Whether the fast fixed-step path solves (see ``backend``)."""
        return self.backend == "fixed" or (self.backend == "auto" and self.method in FIXED_METHODS
                                           and self.step_size is None and not self.adjoint)

    def odeint(self, func, y0, t, params=()):
        """Integrate ``dy/dt = func(t, y)`` from ``y0`` at times ``t``; returns ``(len(t),) + y0.shape``.

        :param params: tensors ``func`` closes over, needed by the adjoint to return their gradients.
        """
        options = dict(self.options)
        if self.method in _FIXED and self.step_size is not None:
            options.setdefault("step_size", step_check.check_step_count(t, self.step_size))
        if self.method in step_check.ADAPTIVE:
            options.setdefault("max_num_steps", step_check.DEFAULT_MAX_NUM_STEPS)
        if self.substeps > 1 and self.method in FIXED_METHODS:  # the same grid as the fast path
            options.setdefault("grid_constructor", lambda f, y0, ts: _substep_grid(ts, self.method, self.substeps))
        kwargs = dict(method=self.method, rtol=self.rtol, atol=self.atol, options=options or None)
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
        if self.method in _FIXED and self.step_check:
            step_check.check_fixed_step(func, out, t, self.method, options.get("step_size"))
        return out


def _substep_grid(t, method, substeps):
    """The fast path's step grid for ``torchdiffeq``: every observation interval cut into ``substeps`` steps."""
    return torch.cat([stage_times(t, method, substeps)[0][:, 0], t[-1:]])
