"""The solver objects: every registered tableau is consistent and has the order it claims, and each explicit
Runge-Kutta solver gives torchdiffeq's values and gradients on the fast path (parametrised over the registry, so a
new solver file is checked without a new test); each solver's one step by hand is in its own test file."""
import math

import pytest
import torch

from pyro_node_uq.distributions import ODESolver
from pyro_node_uq.distributions.solvers import (
    RK4,
    SOLVERS,
    Dopri5,
    ExplicitRK,
    Midpoint,
    Tableau,
    get_solver,
)

TABLEAU_SOLVERS = sorted(name for name, cls in SOLVERS.items() if cls.tableau is not None)


def _order_conditions(tab):
    """``{order: [(sum, exact)]}``: the Butcher order conditions of the rooted trees up to order 4, and the bushy
    tree of order 5 (one failed condition of an order shows the method does not reach it)."""
    S, b, c = tab.stages, tab.b, tab.c
    A = [[tab.a[i][j] if j < i else 0.0 for j in range(S)] for i in range(S)]
    Ac = [sum(A[i][j] * c[j] for j in range(S)) for i in range(S)]
    Ac2 = [sum(A[i][j] * c[j] ** 2 for j in range(S)) for i in range(S)]
    AAc = [sum(A[i][j] * Ac[j] for j in range(S)) for i in range(S)]

    def weigh(v):
        return sum(bi * vi for bi, vi in zip(b, v))

    return {1: [(sum(b), 1.0)],
            2: [(weigh(c), 1 / 2)],
            3: [(weigh([ci ** 2 for ci in c]), 1 / 3), (weigh(Ac), 1 / 6)],
            4: [(weigh([ci ** 3 for ci in c]), 1 / 4), (weigh([ci * v for ci, v in zip(c, Ac)]), 1 / 8),
                (weigh(Ac2), 1 / 12), (weigh(AAc), 1 / 24)],
            5: [(weigh([ci ** 4 for ci in c]), 1 / 5)]}


@pytest.mark.parametrize("name", TABLEAU_SOLVERS)
def test_tableau_rows_sum_to_c_and_the_order_conditions_hold_exactly_up_to_the_order(name):
    scheme = get_solver(name)
    tab = scheme.tableau
    assert tab.check() is tab
    for ci, row in zip(tab.c, tab.a):
        assert sum(row) == pytest.approx(ci, abs=1e-14)
    conditions = _order_conditions(tab)
    for order in range(1, scheme.order + 1):
        for got, exact in conditions[order]:
            assert got == pytest.approx(exact, abs=1e-14), (name, order)
    assert any(abs(got - exact) > 1e-6 for got, exact in conditions[scheme.order + 1]), "order understated"


@pytest.mark.parametrize("name", TABLEAU_SOLVERS)
def test_global_error_falls_as_the_claimed_order(name):
    """y' = -y + t on [0, 1]: halving the step divides the error at t = 1 by about 2^order."""
    scheme = get_solver(name)
    exact = 2 * math.exp(-1.0)  # y = t - 1 + 2 exp(-t) from y(0) = 1

    def error(n):
        y, h = torch.ones(1, dtype=torch.float64), 1.0 / n
        for k in range(n):
            y = scheme.step(lambda t, y: -y + t, y, torch.tensor(k * h, dtype=torch.float64), h)
        return abs(float(y) - exact)

    assert math.log2(error(20) / error(40)) == pytest.approx(scheme.order, abs=0.15)


@pytest.mark.parametrize("name", [n for n in TABLEAU_SOLVERS if SOLVERS[n].torchdiffeq])
def test_the_solver_step_is_torchdiffeqs_step(name):
    """The step check steps with the solver object: the same step as torchdiffeq's method of that name."""
    import torchdiffeq

    def f(t, y):
        return torch.sin(3 * t) - y ** 3

    y, t0, h = torch.tensor([0.7, -1.2], dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64), 0.25
    ref = torchdiffeq.odeint(f, y, torch.stack([t0, t0 + h]), method=SOLVERS[name].torchdiffeq,
                             options={"step_size": h})[-1]
    torch.testing.assert_close(get_solver(name).step(f, y, t0, h), ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", [n for n in TABLEAU_SOLVERS if SOLVERS[n].torchdiffeq])
def test_every_tableau_solver_runs_the_fast_path_and_matches_torchdiffeq(name):
    from .. import test_fixed_grid as fixed

    assert ODESolver(method=name).path() == "discrete_adjoint"
    fixed.test_fixed_path_matches_torchdiffeq(name, 2, "particles")


@pytest.mark.parametrize("name", TABLEAU_SOLVERS)
@pytest.mark.parametrize("grid", ["nonuniform", "uniform"])
def test_the_fast_paths_step_check_measures_what_the_solver_step_measures(monkeypatch, name, grid):
    from .. import test_fixed_grid as fixed

    fixed.test_fast_step_check_measures_what_the_torchdiffeq_check_measures(monkeypatch, name, 1, grid, 2)


def test_tableau_check_names_what_is_wrong():
    with pytest.raises(ValueError, match="row 1 of a sums to"):
        Tableau(c=(0.0, 0.5), a=((), (0.4,)), b=(0.0, 1.0)).check()
    with pytest.raises(ValueError, match="weights b sum to"):
        Tableau(c=(0.0, 0.5), a=((), (0.5,)), b=(0.5, 0.6)).check()
    with pytest.raises(ValueError, match="rows of a of lengths"):
        Tableau(c=(0.0, 0.5), a=((), (0.25, 0.25)), b=(0.5, 0.5)).check()
    with pytest.raises(ValueError, match="first stage"):
        Tableau(c=(0.5,), a=((),), b=(1.0,)).check()


def test_registry_refuses_a_second_solver_of_a_name_and_a_bad_tableau():
    with pytest.raises(ValueError, match="'rk4' is registered twice"):
        type("MyRK4", (ExplicitRK,), {"name": "rk4", "order": 4, "tableau": RK4.tableau})
    with pytest.raises(ValueError, match="weights b sum to"):
        type("Broken", (ExplicitRK,), {"name": "broken", "order": 1, "tableau": Tableau((0.0,), ((),), (2.0,))})
    assert "broken" not in SOLVERS


def test_solver_objects_and_names_are_the_same_options():
    assert ODESolver(method=RK4()) == ODESolver(method="rk4") == ODESolver.coerce(RK4())
    solver = ODESolver.coerce(Dopri5(rtol=1e-9, atol=1e-10))
    assert (solver.method, solver.rtol, solver.atol) == ("dopri5", 1e-9, 1e-10)
    assert solver.scheme == Dopri5(rtol=1e-9, atol=1e-10) and ODESolver(method=Dopri5()).rtol == ODESolver().rtol
    assert get_solver("midpoint") == Midpoint() and get_solver(Midpoint()) == Midpoint()
    import pickle

    for scheme in (RK4(), Dopri5(rtol=1e-3)):  # classes made from a table pickle by name too
        assert pickle.loads(pickle.dumps(scheme)) == scheme
    with pytest.raises(ValueError, match=r"solver.method: expected one of \[.*'rk4'.*\] or a Solver object"):
        ODESolver(method="rk5")
