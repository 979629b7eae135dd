"""The 3/8-rule fourth-order Runge-Kutta method: one step by hand, exact on a cubic in time."""
import pytest
import torch

from pyro_node_uq.distributions.solvers import RK4


def test_one_step_against_hand_computed_stages():
    """y' = t y from y = 2 at t = 1 with h = 0.5: the four stages of the 3/8 rule by hand."""
    y, t0, h = torch.tensor([2.0], dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64), 0.5
    r1 = 2.0
    r2 = (1 + h / 3) * (2 + h * r1 / 3)
    r3 = (1 + 2 * h / 3) * (2 + h * (-r1 / 3 + r2))
    r4 = 1.5 * (2 + h * (r1 - r2 + r3))
    got = float(RK4().step(lambda t, y: t * y, y, t0, h))
    assert got == pytest.approx(2 + h * (r1 + 3 * r2 + 3 * r3 + r4) / 8, abs=1e-14)


def test_a_cubic_in_time_is_integrated_exactly_and_a_quartic_is_not():
    """y' = t^3 over [0, 1]: Simpson's 3/8 rule is exact to degree 3 (1/4), not to degree 4 (1/5)."""
    zero, t0 = torch.zeros(1, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    assert float(RK4().step(lambda t, y: t ** 3 + 0 * y, zero, t0, 1.0)) == pytest.approx(0.25, abs=1e-15)
    assert abs(float(RK4().step(lambda t, y: t ** 4 + 0 * y, zero, t0, 1.0)) - 0.2) > 1e-3
