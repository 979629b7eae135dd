"""ODESolver: options coerced and checked by name, torchdiffeq and the fast grid agree with a closed form, the
adaptive step budget is reported as a divergence naming the time reached."""
import math

import pytest
import torch

from pyro_node_uq.distributions import NODEDivergenceError, ODESolver


def decay(t, y):
    return -0.7 * y


@pytest.mark.parametrize("solver", [{"method": "dopri5", "rtol": 1e-10, "atol": 1e-12, "backend": "torchdiffeq"},
                                    {"method": "rk4", "substeps": 20, "backend": "torchdiffeq"},
                                    {"method": "rk4", "step_size": 0.01, "step_check": False}])
def test_exponential_decay_matches_the_closed_form(solver):
    t = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    y0 = torch.tensor([[1.0], [2.5]], dtype=torch.float64)
    out = ODESolver.coerce(solver).odeint(decay, y0, t)
    assert out.shape == (7, 2, 1)
    expected = y0 * torch.exp(-0.7 * t)[:, None, None]
    torch.testing.assert_close(out, expected, rtol=1e-7, atol=0)


def test_fixed_grid_property_picks_the_fast_path_only_where_it_applies():
    assert ODESolver().fixed_grid and ODESolver(method="midpoint").fixed_grid
    assert not ODESolver(method="dopri5").fixed_grid
    assert not ODESolver(step_size=0.1).fixed_grid and not ODESolver(adjoint=True).fixed_grid
    assert not ODESolver(backend="torchdiffeq").fixed_grid


def test_options_are_coerced_and_bad_ones_named():
    assert ODESolver.coerce(None) == ODESolver() and ODESolver.coerce({"method": "euler"}).method == "euler"
    with pytest.raises(ValueError, match=r"unknown options \['metod'\]"):
        ODESolver.coerce({"metod": "rk4"})
    with pytest.raises(TypeError, match="solver must be an ODESolver, a dict or None"):
        ODESolver.coerce("rk4")
    with pytest.raises(ValueError, match="backend must be"):
        ODESolver(backend="jax")
    with pytest.raises(ValueError, match="backend='fixed' needs method"):
        ODESolver(method="dopri5", backend="fixed")
    with pytest.raises(ValueError, match="substeps must be an integer >= 1"):
        ODESolver(substeps=0)
    with pytest.raises(ValueError, match="substeps needs a fixed-step method"):
        ODESolver(method="dopri5", substeps=2)
    with pytest.raises(ValueError, match="compile must be"):
        ODESolver(compile="always")
    with pytest.raises(ValueError, match="compile must be"):
        ODESolver(compile="sometimes")


def test_exhausted_step_budget_is_a_divergence_naming_the_time():
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    stiff = ODESolver(method="dopri5", rtol=1e-12, atol=1e-14, options={"max_num_steps": 5})
    with pytest.raises(NODEDivergenceError, match=r"used its 5 steps between two output times and stopped at t="):
        stiff.odeint(lambda s, y: torch.cos(50 * s) * y + math.pi, torch.ones(1, dtype=torch.float64), t)


@pytest.mark.parametrize("method", ["heun2", "heun3", "rk4"])
def test_substeps_cut_the_steps_of_every_fixed_step_method_on_torchdiffeq(method):
    """substeps reach torchdiffeq's fixed-grid methods with or without a tableau: the error at second order or
    higher falls by at least 50x with 10 substeps."""
    t = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    y0 = torch.ones(2, 1, dtype=torch.float64)
    err = [float((ODESolver(method=method, substeps=s, backend="torchdiffeq").odeint(decay, y0, t)[-1]
                  - y0 * math.exp(-2.1)).abs().max()) for s in (1, 10)]
    assert err[1] < err[0] / 50
