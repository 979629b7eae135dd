"""The explicit Euler method: one step by hand, and its single stage."""
import pytest
import torch

from pyro_node_uq.distributions.solvers import SOLVERS, Euler


def test_one_step_against_a_hand_computed_value():
    """y' = t y from y = 2 at t = 1 with h = 0.5: 2 + 0.5 * (1 * 2) = 3."""
    y, t0 = torch.tensor([2.0], dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    assert float(Euler().step(lambda t, y: t * y, y, t0, 0.5)) == pytest.approx(3.0, abs=1e-15)


def test_one_stage_evaluated_at_the_start_only():
    calls = []

    def f(t, y):
        calls.append(float(t))
        return torch.ones_like(y)

    Euler().step(f, torch.zeros(3), torch.tensor(0.25), 0.5)
    assert calls == [0.25] and SOLVERS["euler"] is Euler and Euler.order == 1 and Euler.torchdiffeq == "euler"
