"""Solver limits: the adaptive step budget and the fixed-step stability warning (serious failure 2)."""
import time
import warnings

import pyro
import pytest
import torch

from pyro_node_uq.distributions import NODEDivergenceError, ODESolver
from pyro_node_uq.distributions.step_check import StepSizeWarning, step_doubling_error
from pyro_node_uq.models import NODEModel


def stiff(t, y):
    return -100.0 * (y - torch.cos(t))  # solution stays near cos(t): |y| < 2


def test_huge_prior_under_dopri5_stops_with_a_clear_error_instead_of_hanging():
    """Used to spin inside torchdiffeq's adaptive step for minutes: ODESolver passed no max_num_steps."""
    pyro.set_rng_seed(0)
    t, x, y = torch.linspace(0, 1, 11), torch.randn(2, 11, 1), torch.zeros(2, 11, 1)
    model = NODEModel(obs_dim=1, input_dim=1, R_hidden=(4,), prior_scale=1e3,
                      solver={"method": "dopri5", "options": {"max_num_steps": 200}})
    start = time.perf_counter()
    with pytest.raises(NODEDivergenceError, match=r"'dopri5' used its 200 steps .* stopped at t=.*max_num_steps"):
        pyro.poutine.trace(model).get_trace(t, x, y)
    assert time.perf_counter() - start < 30


def test_default_step_budget_applies_to_adaptive_methods_only():
    calls = []

    def field(t, y):
        calls.append(1)
        return stiff(t, y)

    solver = ODESolver(method="dopri5", rtol=1e-12, atol=1e-14)
    with pytest.raises(NODEDivergenceError, match="used its 1000 steps"):
        solver.odeint(lambda t, y: 1e4 * torch.sin(1e4 * t) * torch.ones_like(y), torch.ones(1), torch.tensor([0., 10.]))
    out = ODESolver(method="dopri5", options={"max_num_steps": 5000}).odeint(field, torch.ones(1),
                                                                              torch.linspace(0, 1, 3))
    assert abs(float(out[-1]) - torch.cos(torch.tensor(1.0)).item()) < 1e-2


def test_unstable_fixed_step_warns_once_per_solve():
    """Euler with step 0.1 on a stiff field returned |y| in the thousands without a word."""
    t = torch.linspace(0, 1, 11)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ODESolver(method="euler", step_size=0.1).odeint(stiff, torch.ones(64, 1), t)
    assert out.abs().max() > 100
    steps = [w for w in caught if issubclass(w.category, StepSizeWarning)]
    assert len(steps) == 1 and "step 0.1" in str(steps[0].message)


@pytest.mark.parametrize("method, step", [("rk4", 0.005), ("euler", 0.001), ("rk4", None)])
def test_stable_fixed_steps_do_not_warn(method, step):
    t = torch.linspace(0, 1, 201) if step is None else torch.linspace(0, 1, 11)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepSizeWarning)
        out = ODESolver(method=method, step_size=step).odeint(stiff, torch.ones(3, 1), t)
    assert out.abs().max() < 2


def test_step_doubling_error_matches_the_linear_amplification():
    """For y' = -lam y, Euler's one step is (1 - lam h) y and two half steps (1 - lam h / 2)^2 y."""
    y = torch.ones(1, dtype=torch.float64)
    err = step_doubling_error(lambda t, y: -30.0 * y, y, torch.tensor(0.0, dtype=torch.float64),
                              torch.tensor(0.1, dtype=torch.float64), "euler")
    one, two = 1 - 3.0, (1 - 1.5) ** 2
    assert err == pytest.approx(abs(one - two) / (abs(two) + 1))
