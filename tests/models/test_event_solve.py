"""Dose events in the solve against closed forms (repeated boluses, an infusion), RK4 and adaptive paths."""
import math

import pytest
import torch

from pyro_node_uq.data import Doses
from pyro_node_uq.data.pk import pk_closed_form
from pyro_node_uq.distributions import NODEDivergenceError, ODESolver
from pyro_node_uq.models.event_solve import check_diverged, solve_events

D64 = torch.float64


def _repeated(n=3):
    times = torch.tensor([0.0, 12.0, 24.0, 36.0], dtype=D64).expand(n, 4).clone()
    times[1] += 1.3  # units dose at different times: the breakpoints of all units are merged
    return Doses.bolus(times, torch.arange(1.0, n + 1, dtype=D64)[:, None].expand(n, 4).clone())


@pytest.mark.parametrize("solver", [ODESolver("dopri5", rtol=1e-11, atol=1e-12), ODESolver("rk4", step_size=0.05)])
def test_repeated_bolus_matches_closed_form(solver):
    doses, k = _repeated(), torch.tensor([0.05, 0.1, 0.2], dtype=D64)
    t = torch.tensor([0.5, 3.0, 12.0, 13.0, 20.0, 24.0, 30.0, 47.5], dtype=D64)
    hs = solve_events(lambda s, h: -k[:, None] * h, torch.zeros(1, dtype=D64), t, doses, solver, torch.Size([3]))
    expected = pk_closed_form(t, doses, k, torch.ones(3, dtype=D64))
    assert (hs[..., 0] - expected).abs().max() < 1e-6
    assert hs[0, 2, 0] < hs[0, 3, 0]  # the 12 h sample is a trough: before that dose


def test_infusion_matches_closed_form():
    r, dur, k = 2.0, 3.0, 0.4
    doses = Doses(times=torch.tensor([[1.0]], dtype=D64), amounts=torch.tensor([[r * dur]], dtype=D64),
                  cmt=torch.tensor([[0]]), rates=torch.tensor([[r]], dtype=D64), mask=torch.tensor([[True]]))
    t = torch.tensor([0.5, 2.0, 4.0, 6.0], dtype=D64)
    hs = solve_events(lambda s, h: -k * h, torch.zeros(1, dtype=D64), t, doses,
                      ODESolver("dopri5", rtol=1e-11, atol=1e-12), torch.Size([1]))
    during = lambda s: r / k * (1 - math.exp(-k * (s - 1.0)))  # noqa: E731
    expected = [0.0, during(2.0), during(4.0), during(4.0) * math.exp(-k * 2.0)]
    assert torch.allclose(hs[0, :, 0], torch.tensor(expected, dtype=D64), atol=1e-8)


def test_particles_and_units_in_one_solve():
    doses, k = _repeated(), torch.tensor([[0.05], [0.1]], dtype=D64)  # 2 particles x 3 units
    t = torch.linspace(1, 40, 7, dtype=D64)
    hs = solve_events(lambda s, h: -k[..., None] * h, torch.zeros(1, dtype=D64), t, doses,
                      ODESolver("rk4", step_size=0.1), torch.Size([2, 3]))
    assert hs.shape == (2, 3, 7, 1)
    assert (hs[1, :, :, 0] - pk_closed_form(t, doses, torch.full((3,), 0.1, dtype=D64), torch.ones(3, dtype=D64))
            ).abs().max() < 1e-6


def test_divergence_is_reported():
    hs = torch.tensor([[[1.0]], [[float("inf")]]])
    with pytest.raises(NODEDivergenceError, match="diverged for 1 of 2"):
        check_diverged(hs, ODESolver(), "raise")
