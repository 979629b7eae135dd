"""Which code runs a solve: ONE decision, from the solver's options, the vector field and the call's context.

An ODE solve of the NODE runs on one of five execution paths:

``"discrete_adjoint"``
    the fast fixed-step solve of :mod:`~pyro_node_uq.distributions.fixed_grid` on the observation grid, with the
    hand-written exact gradient of the Runge-Kutta scheme (:mod:`~pyro_node_uq.distributions.rk_backprop`), no
    autograd tape.  Needs an explicit Runge-Kutta solver (one with a tableau) and a ``tanh`` field without output
    activation, an eager solve (no ``compile``), step widths without a gradient and no ``torch.jit`` trace.
``"autograd"``
    the same fixed-step grid, its step loop differentiated by autograd: any field activation, a trace, times that
    need a gradient.  The exact gradient of the same computed solution.
``"compiled"``
    the autograd step loop compiled by ``torch.compile`` (``compile=True`` or ``"auto"``).
``"torchdiffeq"``
    ``torchdiffeq.odeint`` differentiated by autograd: adaptive and multistep methods, ``step_size``,
    ``backend="torchdiffeq"``.
``"torchdiffeq_adjoint"``
    ``torchdiffeq.odeint_adjoint``, the continuous adjoint (memory constant in the number of steps, gradient
    exact only up to the adjoint solve's error).

``ODESolver(backward=...)`` names the backward pass: ``"auto"`` takes the fastest exact one that applies
(``"discrete_adjoint"`` where it applies, else autograd), ``"discrete_adjoint"`` insists on the hand-written
gradient (an error where it does not apply), ``"autograd"`` differentiates the forward ops, ``"adjoint"`` the
continuous adjoint.
"""
__all__ = ["BACKWARDS", "GRID_PATHS", "PATHS", "select"]

#: every execution path (see the module docstring)
PATHS = ("discrete_adjoint", "autograd", "compiled", "torchdiffeq", "torchdiffeq_adjoint")
#: the paths of the fast fixed-step solve on the observation grid
GRID_PATHS = ("discrete_adjoint", "autograd", "compiled")
#: the choices of ``ODESolver(backward=...)``
BACKWARDS = ("auto", "discrete_adjoint", "autograd", "adjoint")


def hand_written_field(field):
    """Whether the hand-written solve handles the vector field ``field`` (a ``BatchedMLP``, or ``None``: any).

    :returns: ``None`` if it does, else the reason it does not.
    """
    if field is None or (field.activation == "tanh" and field.out_activation is None):
        return None
    return f"the field has activation={field.activation!r}, out_activation={field.out_activation!r} (needs tanh, None)"


def select(solver, field=None, *, infusion=False, times_grad=False, tracing=False):
    """The execution path (one of :data:`PATHS`) of one solve.

    :param ODESolver solver: the solver's options (its ``scheme``, ``backend``, ``backward``, ``step_size`` and
        ``compile`` decide).
    :param BatchedMLP field: the vector field R, or ``None`` to decide from the options alone.
    :param bool infusion: the solve adds a constant infusion rate to R (folded into R's last bias on the grid, which
        needs R without output activation).
    :param bool times_grad: the solve's times need a gradient.
    :param bool tracing: the solve runs under ``torch.jit.trace`` (Pyro's ``jit_compile``), which records the ops
        inside a custom autograd function and cannot keep the hand-written gradient.
    :raises ValueError: where ``backward="discrete_adjoint"`` was asked for and does not apply.

    Example::

        >>> from pyro_node_uq.distributions import ODESolver
        >>> select(ODESolver()), select(ODESolver(compile=True)), select(ODESolver(method="dopri5"))
        ('discrete_adjoint', 'compiled', 'torchdiffeq')
        >>> select(ODESolver(backward="adjoint")), select(ODESolver(), tracing=True)
        ('torchdiffeq_adjoint', 'autograd')
    """
    scheme, backward = solver.scheme, solver.backward
    infusion_blocked = infusion and field is not None and field.out_activation is not None
    on_grid = (scheme.tableau is not None and solver.backend != "torchdiffeq" and solver.step_size is None
               and backward != "adjoint" and not infusion_blocked)
    if not on_grid:
        path = "torchdiffeq_adjoint" if backward == "adjoint" else "torchdiffeq"
        why = "it solves with torchdiffeq" + (" (an infusion into a field with output activation)"
                                              if infusion_blocked else "")
    elif solver.compile:
        path, why = "compiled", "compile is on"
    else:
        why = hand_written_field(field) or ("the solve is traced" if tracing else None) or (
            "the times need a gradient" if times_grad else None)
        path = "autograd" if why or backward == "autograd" else "discrete_adjoint"
    if backward == "discrete_adjoint" and path != "discrete_adjoint":
        raise ValueError(f"ODESolver: backward='discrete_adjoint' does not apply to this solve with method "
                         f"{solver.method!r}: {why}; use backward='auto' or 'autograd'")
    return path
