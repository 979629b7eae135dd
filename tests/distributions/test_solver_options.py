"""SolverOptions: the ODE and SDE solvers' options are coerced, checked and serialised by one base."""
import pickle

import pytest

from pyro_node_uq.distributions import ODESolver, SDESolver, SolverOptions
from pyro_node_uq.distributions.solvers import RK4


@pytest.mark.parametrize("cls", [ODESolver, SDESolver])
def test_both_solvers_share_coerce_round_trip_and_the_divergence_bound(cls):
    assert issubclass(cls, SolverOptions)
    solver = cls.coerce({"method": "euler", "max_abs": 10.0})
    assert cls.coerce(None) == cls() and cls.coerce(solver) is solver
    assert cls(**solver.to_dict()) == solver == pickle.loads(pickle.dumps(solver))
    with pytest.raises(ValueError, match=r"unknown options \['metod'\]"):
        cls.coerce({"metod": "euler"})
    with pytest.raises(TypeError, match=f"solver must be an {cls.__name__}, a dict or None"):
        cls.coerce(3)
    with pytest.raises(ValueError, match=f"{cls.__name__}: max_abs"):
        cls(max_abs=-1.0)


def test_only_the_ode_solver_takes_a_solver_object():
    assert ODESolver.coerce(RK4()).method == "rk4"
    with pytest.raises(TypeError, match="solver must be an SDESolver"):
        SDESolver.coerce(RK4())
