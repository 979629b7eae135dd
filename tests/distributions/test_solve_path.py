"""select: the decision table of the execution path, the errors of an explicit backward that does not apply, and
the paths' gradients against each other."""
from types import SimpleNamespace

import pytest
import torch

from pyro_node_uq.distributions import ODESolver, select
from pyro_node_uq.distributions.solve_path import GRID_PATHS, PATHS

TANH = SimpleNamespace(activation="tanh", out_activation=None)
SOFTPLUS = SimpleNamespace(activation="softplus", out_activation=None)
TANH_OUT = SimpleNamespace(activation="tanh", out_activation="tanh")

TABLE = [  # (solver options, field, context, path)
    ({}, TANH, {}, "discrete_adjoint"),
    ({}, None, {}, "discrete_adjoint"),
    ({"method": "euler"}, TANH, {}, "discrete_adjoint"),
    ({"method": "midpoint", "substeps": 3}, TANH, {}, "discrete_adjoint"),
    ({"backward": "discrete_adjoint"}, TANH, {}, "discrete_adjoint"),
    ({"backend": "fixed"}, TANH, {}, "discrete_adjoint"),
    ({}, TANH, {"infusion": True}, "discrete_adjoint"),
    ({}, SOFTPLUS, {}, "autograd"),
    ({}, TANH_OUT, {}, "autograd"),
    ({}, TANH, {"tracing": True}, "autograd"),
    ({}, TANH, {"times_grad": True}, "autograd"),
    ({"backward": "autograd"}, TANH, {}, "autograd"),
    ({"compile": True}, TANH, {}, "compiled"),
    ({"compile": "auto"}, SOFTPLUS, {"tracing": True}, "compiled"),
    ({"backward": "adjoint"}, TANH, {}, "torchdiffeq_adjoint"),
    ({"adjoint": True}, TANH, {}, "torchdiffeq_adjoint"),
    ({"method": "dopri5", "adjoint": True}, TANH, {}, "torchdiffeq_adjoint"),
    ({"method": "dopri5"}, TANH, {}, "torchdiffeq"),
    ({"method": "dopri5", "backward": "autograd"}, TANH, {}, "torchdiffeq"),
    ({"method": "heun3"}, TANH, {}, "torchdiffeq"),
    ({"step_size": 0.1}, TANH, {}, "torchdiffeq"),
    ({"backend": "torchdiffeq"}, TANH, {}, "torchdiffeq"),
    ({}, TANH_OUT, {"infusion": True}, "torchdiffeq"),
]


@pytest.mark.parametrize("options, field, context, path", TABLE)
def test_decision_table(options, field, context, path):
    solver = ODESolver(**options)
    assert select(solver, field, **context) == path == solver.path(field, **context)
    assert solver.fixed_grid == (select(solver) in GRID_PATHS)


def test_every_path_is_in_the_table():
    assert {row[-1] for row in TABLE} == set(PATHS)


@pytest.mark.parametrize("field, context, reason", [(SOFTPLUS, {}, "activation='softplus'"),
                                                    (TANH, {"tracing": True}, "traced"),
                                                    (TANH, {"times_grad": True}, "times need a gradient"),
                                                    (TANH_OUT, {"infusion": True}, "infusion")])
def test_an_explicit_discrete_adjoint_that_does_not_apply_is_an_error_naming_why(field, context, reason):
    with pytest.raises(ValueError, match=f"backward='discrete_adjoint' does not apply.*{reason}"):
        select(ODESolver(backward="discrete_adjoint"), field, **context)


@pytest.mark.parametrize("options, match", [
    ({"method": "dopri5", "backward": "discrete_adjoint"}, "needs an explicit Runge-Kutta method"),
    ({"compile": True, "backward": "discrete_adjoint"}, "does not apply"),
    ({"backward": "reverse"}, "backward: expected one of"),
    ({"adjoint": True, "backward": "autograd"}, "adjoint=True is backward='adjoint'"),
])
def test_bad_backward_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        ODESolver(**options).path()


def test_adjoint_flag_and_backward_agree():
    assert ODESolver(backward="adjoint").adjoint and ODESolver(adjoint=True).backward == "adjoint"
    assert ODESolver(**ODESolver(adjoint=True).to_dict()) == ODESolver(backward="adjoint")


@pytest.mark.parametrize("backward", ["autograd", "adjoint"])
def test_the_backward_passes_give_the_discrete_adjoints_gradient(monkeypatch, backward):
    """The hand-written gradient is the exact gradient of the computed solution: autograd through the same steps
    gives it to rounding error, the continuous adjoint (solved backwards on the same fine rk4 grid) to that
    backward solve's error."""
    from pyro_node_uq.distributions import fixed_grid, rk_backprop

    from .test_fixed_grid import _setup, _solve

    R, Z, params, t, x, y = _setup()
    used = []
    monkeypatch.setattr(fixed_grid, "rk_solve", lambda *a, **k: used.append(1) or rk_backprop.rk_solve(*a, **k))
    grads, substeps = [], 1 if backward == "autograd" else 40
    for option in ("auto", backward):
        d, p = _solve(R, Z, params, t, x, "auto", backward=option, substeps=substeps)
        d.log_prob(y).sum().backward()
        grads.append({k: v.grad for k, v in p.items()})
    assert len(used) == 1  # the "auto" solve only
    tol = 1e-10 if backward == "autograd" else 1e-4
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=tol, atol=tol)
