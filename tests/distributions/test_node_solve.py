"""solve_node: closed-form one-compartment PK with repeated boluses and infusions, ragged per-unit times, the
contract check, divergence flags."""
import math

import pytest
import torch

from pyro_node_uq.distributions import DoseSchedule, NODEDivergenceError
from pyro_node_uq.distributions.node_solve import solve_node
from pyro_node_uq.nn import BatchedMLP

K = torch.tensor([0.3, 0.15, 0.5], dtype=torch.float64)  # elimination rates of 3 weight particles
V = 2.0  # volume: concentration = amount / V through a linear Z


def one_compartment():
    """dA/dt = -k A as a linear R, C = A / V as a linear Z, particles (3, 1) over units."""
    R, Z = BatchedMLP("R", (1, 1)), BatchedMLP("Z", (1, 1))
    params = {"R.0.weight": -K[:, None, None, None], "R.0.bias": torch.zeros(3, 1, 1, dtype=torch.float64),
              "Z.0.weight": torch.full((1, 1), 1 / V, dtype=torch.float64),
              "Z.0.bias": torch.zeros(1, dtype=torch.float64)}
    return R, Z, params


def closed_form(times, doses, k):
    """Concentration at ``times`` (list) for dose rows (time, amount, rate) by superposition."""
    out = []
    for t in times:
        a = 0.0
        for s, amt, rate in doses:
            if rate == 0 and s <= t:
                a += amt * math.exp(-k * (t - s))
            elif rate > 0 and s <= t:
                end = s + amt / rate
                during = rate / k * (1 - math.exp(-k * (min(t, end) - s)))
                a += during * math.exp(-k * max(t - end, 0.0))
        out.append(a / V)
    return out


UNITS = [  # per unit: dose rows (time, amount, rate) and its own observation times (between and at doses)
    ([(0.0, 100.0, 0.0), (6.0, 50.0, 0.0), (12.0, 100.0, 0.0), (17.3, 80.0, 0.0)],
     [0.5, 1.0, 3.0, 6.0, 7.25, 12.0, 15.0, 20.0, 24.0]),
    ([(0.0, 60.0, 0.0), (8.0, 60.0, 0.0), (16.0, 60.0, 0.0)],
     [0.25, 2.0, 9.5, 23.0]),
]
INFUSION_UNITS = [
    ([(0.0, 100.0, 50.0), (10.0, 40.0, 0.0), (12.0, 90.0, 30.0)], [0.5, 1.0, 2.5, 6.0, 11.0, 13.0, 14.0, 20.0]),
    ([(1.0, 30.0, 0.0), (3.0, 60.0, 20.0)], [0.5, 2.0, 4.0, 7.0]),
]
SOLVERS = [{"method": "rk4", "substeps": 80}, {"method": "rk4", "substeps": 80, "backend": "torchdiffeq"},
           {"method": "dopri5", "rtol": 1e-11, "atol": 1e-11}]


def padded(units):
    T = max(len(u[1]) for u in units)
    t = torch.zeros(len(units), T, dtype=torch.float64)
    mask = torch.zeros(len(units), T, dtype=torch.bool)
    for i, (_, times) in enumerate(units):
        t[i, :len(times)] = torch.tensor(times, dtype=torch.float64)
        mask[i, :len(times)] = True
    doses = DoseSchedule.from_lists([[d[0] for d in u[0]] for u in units], [[d[1] for d in u[0]] for u in units],
                                    rates=[[d[2] for d in u[0]] for u in units], dtype=torch.float64)
    return t, mask, doses


@pytest.mark.parametrize("units", [UNITS, INFUSION_UNITS], ids=["boluses", "infusions"])
@pytest.mark.parametrize("solver", SOLVERS, ids=["rk4-fast", "rk4-torchdiffeq", "dopri5"])
def test_one_compartment_matches_closed_form(units, solver):
    R, Z, params = one_compartment()
    t, mask, doses = padded(units)
    sol = solve_node(R, Z, params, t, t_mask=mask, doses=doses, t0=0.0, solver=solver)
    assert sol.mean.shape == (3, 2, t.shape[1], 1) and not sol.diverged.any()
    for p in range(3):
        for i, (rows, times) in enumerate(units):
            want = torch.tensor(closed_form(times, rows, float(K[p])), dtype=torch.float64)
            torch.testing.assert_close(sol.mean[p, i, :len(times), 0], want, rtol=0, atol=1e-6)


def test_fixed_step_never_steps_over_a_bolus():
    """Observations 0 and 10 only, a bolus at 3.3 in between: the solve restarts there (one rk4 step per
    segment would still be close; the old grid of observation times never saw the dose at all)."""
    R, Z, params = one_compartment()
    doses = DoseSchedule.from_lists([[3.3]], [[10.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 10.0], dtype=torch.float64)
    sol = solve_node(R, Z, params, t, doses=doses, solver={"method": "rk4", "substeps": 200})
    want = [closed_form([10.0], [(3.3, 10.0, 0.0)], float(k))[0] for k in K]
    torch.testing.assert_close(sol.mean[:, 0, 1, 0], torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-6)


def test_ragged_units_equal_separate_solves():
    """A nonlinear field with inputs: each unit read off the union grid equals its own solve on its own times."""
    torch.manual_seed(0)
    R, Z = BatchedMLP("R", (3, 8, 2)), BatchedMLP("Z", (3, 1))
    params = {k: v.double().expand((4, 1) + v.shape) + 0.1 * torch.randn((4, 1) + v.shape, dtype=torch.float64)
              for k, v in {**R.init_params(), **Z.init_params()}.items()}
    x_times = torch.linspace(0, 3, 7, dtype=torch.float64)
    x = torch.randn(2, 7, 1, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.4, 1.3, 2.9], [0.0, 2.2, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    solver = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-10}
    sol = solve_node(R, Z, params, t, x, t_mask=mask, x_times=x_times, solver=solver)
    for i in range(2):
        ti = t[i, mask[i]]
        one = solve_node(R, Z, {k: v[:, :1] for k, v in params.items()}, ti, x[i:i + 1], x_times=x_times,
                         solver=solver)
        torch.testing.assert_close(sol.mean[:, i, :len(ti)], one.mean[:, 0], rtol=0, atol=1e-7)
        torch.testing.assert_close(sol.hidden[:, i, :len(ti)], one.hidden[:, 0], rtol=0, atol=1e-7)


def test_shared_times_without_doses_is_one_plain_solve():
    R, Z, params = one_compartment()
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    sol = solve_node(R, Z, params, t, h0=torch.ones(1, dtype=torch.float64))
    want = torch.exp(-K[:, None] * t) / V
    torch.testing.assert_close(sol.mean[:, 0, :, 0], want, rtol=1e-4, atol=0)  # rk4 on the grid itself


def test_gradient_flows_through_doses_and_segments():
    R, Z, params = one_compartment()
    params["R.0.weight"] = params["R.0.weight"].clone().requires_grad_()
    t, mask, doses = padded(INFUSION_UNITS)
    sol = solve_node(R, Z, params, t, t_mask=mask, doses=doses, solver={"method": "rk4", "substeps": 4})
    sol.mean[mask[None].expand(3, 2, -1)].sum().backward()
    assert torch.isfinite(params["R.0.weight"].grad).all() and (params["R.0.weight"].grad != 0).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"t": torch.tensor([[0.0, 2.0, 1.0]], dtype=torch.float64)}, "unit 0, index 2"),
    ({"t": torch.tensor([0.0, float("nan")], dtype=torch.float64)}, "NaN"),
    ({"t_mask": torch.ones(3, dtype=torch.bool)}, "t_mask: only per-unit"),
    ({"t0": 0.5}, "t0: the solve starts at 0.5"),
    ({"doses": DoseSchedule.from_lists([[0.0]], [[1.0]], [[1]], dtype=torch.float64)}, "compartment must lie in"),
    ({"doses": DoseSchedule.from_lists([[0.0]], [[1.0]], dtype=torch.float32)}, "doses: dtype"),
    ({"h0": torch.zeros(2, dtype=torch.float64)}, "h0: expected a last dim of hidden_dim=1"),
    ({"params": {}}, "params: missing parameter 'R.0.weight'"),
])
def test_contract_errors_name_the_argument(kwargs, match):
    R, Z, params = one_compartment()
    args = {"t": torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), "params": params}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        solve_node(R, Z, args.pop("params"), args.pop("t"), **args)


def test_inputs_with_per_unit_times_need_x_times():
    R = BatchedMLP("R", (2, 1))
    with pytest.raises(ValueError, match="x_times"):
        solve_node(R, None, R.init_params(), torch.zeros(2, 1), torch.zeros(2, 1, 1), obs_dim=1)


def test_divergence_is_flagged_or_raised():
    R, Z, params = one_compartment()
    params["R.0.weight"] = torch.tensor([-0.1, 40.0, -0.2], dtype=torch.float64)[:, None, None, None]
    t = torch.linspace(0, 2, 3, dtype=torch.float64)
    h0 = torch.ones(1, dtype=torch.float64)
    with pytest.raises(NODEDivergenceError, match="1 of 3"):
        solve_node(R, Z, params, t, h0=h0)
    with pytest.warns(RuntimeWarning, match="scored as -inf"):
        sol = solve_node(R, Z, params, t, h0=h0, on_divergence="reject")
    assert sol.diverged.tolist() == [[False], [True], [False]] and torch.isfinite(sol.mean).all()


def test_step_check_runs_once_per_dosed_solve(monkeypatch):
    """A fixed step far above the stable step still warns with doses; the check runs once per solve (on the
    widest segment), not once per segment."""
    from pyro_node_uq.distributions import node_solve, step_check
    from pyro_node_uq.distributions.step_check import StepSizeWarning

    R, Z, params = one_compartment()
    params["R.0.weight"] = torch.full((1, 1), -4.0, dtype=torch.float64)  # rk4 with step 1: x5 per step
    params["R.0.bias"] = torch.zeros(1, dtype=torch.float64)
    doses = DoseSchedule.from_lists([[0.0, 2.0, 4.0]], [[1.0, 1.0, 1.0]], dtype=torch.float64)
    t = torch.arange(0.0, 7.0, dtype=torch.float64)
    calls = []
    monkeypatch.setattr(node_solve, "check_fixed_step",
                        lambda *a, **k: calls.append(1) or step_check.check_fixed_step(*a, **k))
    with pytest.warns(StepSizeWarning, match="far above"):
        solve_node(R, Z, params, t, doses=doses, solver={"method": "rk4"})
    assert len(calls) == 1
