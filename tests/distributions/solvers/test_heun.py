"""Heun's method: one step by hand, the trapezoidal rule on a field of time, torchdiffeq's ``heun2`` step."""
import pytest
import torch

from pyro_node_uq.distributions.solvers import SOLVERS, Heun


def test_one_step_against_a_hand_computed_value():
    """y' = t y from y = 2 at t = 1 with h = 0.5: k1 = 2, k2 = f(1.5, 2 + 0.5 k1) = 1.5 * 3, y + h/2 (k1 + k2)."""
    y, t0 = torch.tensor([2.0], dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    assert float(Heun().step(lambda t, y: t * y, y, t0, 0.5)) == pytest.approx(2 + 0.25 * (2 + 4.5), abs=1e-15)


def test_a_field_of_time_is_integrated_by_the_trapezoidal_rule():
    """y' = t^2 over [0, 1]: the trapezoid gives (0 + 1) / 2, not the exact 1/3."""
    y = Heun().step(lambda t, y: t ** 2 + 0 * y, torch.zeros(1, dtype=torch.float64),
                    torch.tensor(0.0, dtype=torch.float64), 1.0)
    assert float(y) == pytest.approx(0.5, abs=1e-15)


def test_the_step_is_torchdiffeqs_heun2_step():
    import torchdiffeq

    def f(t, y):
        return torch.cos(t) * y - y ** 2

    y, t0, h = torch.tensor([0.3, 1.1], dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64), 0.4
    ref = torchdiffeq.odeint(f, y, torch.stack([t0, t0 + h]), method="heun2", options={"step_size": h})[-1]
    torch.testing.assert_close(Heun().step(f, y, t0, h), ref, rtol=1e-14, atol=1e-14)
    assert SOLVERS["heun"] is Heun and Heun.torchdiffeq == "heun2" and Heun.order == 2
