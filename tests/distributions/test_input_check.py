"""Inputs faster than the solver steps are reported (a bolus as a short pulse was integrated 0% or 125%)."""
import warnings

import pyro
import pytest
import torch

from pyro_node_uq.distributions import ODESolver
from pyro_node_uq.distributions.input_check import (
    InputResolutionWarning,
    input_resolution_error,
)
from pyro_node_uq.distributions.interpolation import Interpolator
from pyro_node_uq.models import NODEModel

TIMES = torch.linspace(0, 2, 201, dtype=torch.float64)
BOLUS = ((TIMES > 0.42) & (TIMES < 0.47)).double()[None, :, None] * 20.0  # area about 0.08 * 20 (linear ramps)


def _integrated(method, step=None):
    """Integral of the bolus, dh/dt = x(t), as the solver sees it, over the exact integral."""
    interp = Interpolator(TIMES, BOLUS)
    solver = ODESolver(method=method, step_size=step, step_check=False)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    h = solver.odeint(lambda s, h: interp(s), torch.zeros(1, 1, dtype=torch.float64), t)
    return float(h[-1].squeeze() / torch.trapezoid(BOLUS[0, :, 0], TIMES))


def test_the_problem_is_real_and_the_check_sees_it():
    assert abs(_integrated("rk4", 0.1) - 1) > 0.2  # a 0.05-wide pulse under steps of 0.1: wrong by > 20%
    assert abs(_integrated("rk4", 0.005) - 1) < 1e-6
    assert input_resolution_error(TIMES, BOLUS, 0.1) > 0.9
    assert input_resolution_error(TIMES, BOLUS, 0.01) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("solver", [{"method": "rk4", "step_size": 0.1}, {"method": "dopri5"}])
def test_node_model_warns_once_for_a_pulse_input(solver):
    model = NODEModel(obs_dim=1, input_dim=1, R_hidden=(4,), solver=solver)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    pyro.set_rng_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # e.g. three SVI steps on the same data: one warning
            pyro.poutine.trace(model).get_trace(t, BOLUS, None, x_times=TIMES)
    found = [w for w in caught if issubclass(w.category, InputResolutionWarning)]
    assert len(found) == 1
    assert ("solver={'options': {'jump_t'" in str(found[0].message)) == (solver["method"] == "dopri5")


def test_smooth_inputs_do_not_warn():
    model = NODEModel(obs_dim=1, input_dim=1, R_hidden=(4,), solver={"method": "rk4", "step_size": 0.1})
    smooth = torch.sin(3 * TIMES)[None, :, None].expand(2, -1, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputResolutionWarning)
        pyro.poutine.trace(model).get_trace(torch.linspace(0, 2, 5, dtype=torch.float64), smooth, None,
                                            x_times=TIMES)
