"""The explicit midpoint method: one step and the step-doubling error by hand."""
import pytest
import torch

from pyro_node_uq.distributions.solvers import Midpoint
from pyro_node_uq.distributions.step_check import step_doubling_error


def test_one_step_against_a_hand_computed_value():
    """y' = t y from y = 2 at t = 1 with h = 0.5: k1 = 2, k2 = f(1.25, 2 + 0.25 k1) = 1.25 * 2.5."""
    y, t0, h = torch.tensor([2.0], dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64), 0.5
    k2 = 1.25 * (2 + 0.25 * 2.0)
    assert float(Midpoint().step(lambda t, y: t * y, y, t0, h)) == pytest.approx(2 + h * k2, abs=1e-15)


def test_step_doubling_error_by_hand():
    """Midpoint on y' = -30 y, h = 0.1: one step (1 - 3 + 4.5) y, two half steps (1 - 1.5 + 1.125)^2 y."""
    y = torch.ones(1, dtype=torch.float64)
    err = step_doubling_error(lambda t, y: -30.0 * y, y, 0.0, 0.1, Midpoint())
    one, two = 2.5, 0.625 ** 2
    assert err == pytest.approx(abs(one - two) / (two + 1), rel=1e-12)


def test_a_field_linear_in_time_is_integrated_exactly():
    """y' = t: the midpoint rule is exact for a linear integrand, (1.5^2 - 1) / 2 over [1, 1.5]."""
    y = Midpoint().step(lambda t, y: t * torch.ones_like(y), torch.zeros(1, dtype=torch.float64),
                        torch.tensor(1.0, dtype=torch.float64), 0.5)
    assert float(y) == pytest.approx((1.5 ** 2 - 1) / 2, abs=1e-15)
