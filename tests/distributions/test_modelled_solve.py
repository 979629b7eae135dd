"""The ODE solve with per-member infusion ends: equal to solves with the ends as given infusions, exact
gradients with respect to the ends, ragged times, boluses and given infusions alongside."""
import pytest
import torch

from pyro_node_uq.distributions import DoseSchedule, ODESolver, solve_node
from pyro_node_uq.distributions.modelled_solve import solve_modelled
from pyro_node_uq.models.dose_parameters import modelled_infusions
from pyro_node_uq.nn import BatchedMLP
from pyro_node_uq.validation import OnDivergence

SOLVER = ODESolver(method="dopri5", rtol=1e-11, atol=1e-11, backend="torchdiffeq")


def _field():
    """A linear two-state field ``dh/dt = W h + b``: a depot emptying into a central compartment."""
    R = BatchedMLP("R", (2, 2))
    params = {"R.0.weight": torch.tensor([[-0.3, 0.8], [0.0, -0.8]]), "R.0.bias": torch.zeros(2)}
    return R, params


def _doses():
    """Unit 0: a modelled duration into the depot at 0, a bolus at 4, a given infusion at 5; unit 1: a modelled
    rate into the central compartment at 1, then another at 1.5 (overlapping).  With the members' values below an
    end falls inside an interval of the shared grid, on a grid time (3.0), and two in one interval."""
    return DoseSchedule.from_lists([[0.0, 4.0, 5.0], [1.0, 1.5]], [[100.0, 30.0, 20.0], [80.0, 40.0]],
                                   [[1, 0, 0], [0, 0]], [[-2.0, 0.0, 10.0], [-1.0, -1.0]])


def test_matches_the_ends_given_as_infusions_per_member():
    R, params = _field()
    t = torch.tensor([[0.5, 1.0, 2.0, 3.0, 6.0, 9.0], [0.5, 1.7, 2.0, 4.0, 7.0, 0.0]])
    t_mask = torch.tensor([[True] * 6, [True] * 5 + [False]])
    d = _doses()
    theta = {"D2": torch.tensor([[2.5, 1.0], [1.3, 1.0], [4.0, 1.0]]),  # (3 members, 2 units)
             "R1": torch.tensor([[1.0, 40.0], [1.0, 25.0], [1.0, 90.0]])}
    rate, end = modelled_infusions(d, theta)
    h0 = torch.zeros(3, 2, 2)
    hidden, bad = solve_modelled(R, params, t, h0, d, rate, end, t_mask=t_mask, solver=SOLVER,
                                 on_divergence=OnDivergence("raise"))
    assert hidden.shape == (3, 2, 6, 2) and not bad.any()
    for m in range(3):
        given = d._replace(rate=torch.where(d.modelled, rate[m], d.rate))
        ref = solve_node(R, None, params, t, h0=torch.zeros(2), t_mask=t_mask, doses=given, obs_dim=2,
                         solver=SOLVER).hidden
        assert torch.allclose(hidden[m][t_mask], ref[t_mask], rtol=0, atol=1e-8), m


@pytest.mark.parametrize("backward", ["autograd", "adjoint"])
def test_gradient_with_respect_to_the_duration_is_exact(backward):
    """``dA/dt = -k A`` with an infusion of 100 over ``D`` that ends between two observation times: the states
    and their gradient with respect to ``D`` equal those of the closed form ``100 / (D k) (1 - exp(-k s))`` during
    the infusion, then its decay (autograd of it), to 1e-8 and 1e-7, by autograd through the solver and by
    ``torchdiffeq``'s continuous adjoint (the pieces' lengths and inputs are among its parameters)."""
    R = BatchedMLP("R", (1, 1))
    params = {"R.0.weight": torch.tensor([[-0.2]]), "R.0.bias": torch.zeros(1)}
    d = DoseSchedule.from_lists([[0.0]], [[100.0]], [[0]], [[-2.0]])
    t = torch.tensor([1.0, 2.0, 4.0])
    D = torch.tensor([2.7], requires_grad=True)
    rate, end = modelled_infusions(d, {"D1": D})
    solver = ODESolver(method="dopri5", rtol=1e-11, atol=1e-11, backend="torchdiffeq", backward=backward)
    hidden, _ = solve_modelled(R, params, t, torch.zeros(1, 1), d, rate, end, solver=solver,
                               on_divergence=OnDivergence("raise"))
    g, = torch.autograd.grad(hidden.sum(), D)
    k = 0.2
    Dc = torch.tensor(2.7, requires_grad=True)
    exact = sum(torch.where(s <= Dc, 100 / Dc / k * (1 - torch.exp(-k * s)),
                            100 / Dc / k * (1 - torch.exp(-k * Dc)) * torch.exp(-k * (s - Dc))) for s in t)
    ge, = torch.autograd.grad(exact, Dc)
    assert torch.allclose(hidden.sum(), exact.detach(), atol=1e-8) and abs(float(g) - float(ge)) < 1e-7


def test_fixed_step_methods_step_on_the_pieces():
    """rk4 with 20 substeps (every piece its own 20 steps, never across a member's end) or a step size of 0.01
    (on the pieces: as many equal steps as keep the longest piece's at most 0.01) agrees with the adaptive solve
    to 1e-6."""
    R, params = _field()
    t = torch.tensor([0.5, 1.0, 2.0, 3.0, 6.0, 9.0])
    d = _doses()
    rate, end = modelled_infusions(d, {"D2": torch.tensor([2.5, 1.0]), "R1": torch.tensor([1.0, 60.0])})
    h0, raise_ = torch.zeros(2, 2), OnDivergence("raise")
    shared, _ = solve_modelled(R, params, t.expand(2, -1), h0, d, rate, end, solver=SOLVER, on_divergence=raise_)
    ref, _ = solve_modelled(R, params, t, h0, d, rate, end, solver=SOLVER, on_divergence=raise_)
    assert torch.equal(shared, ref)  # per-unit times without a mask: all real
    for options in ({"substeps": 20}, {"step_size": 0.01}):
        solver = ODESolver(method="rk4", backend="torchdiffeq", step_check=False, **options)
        got, _ = solve_modelled(R, params, t, h0, d, rate, end, solver=solver, on_divergence=raise_)
        assert torch.allclose(got, ref, rtol=0, atol=1e-6), (options, (got - ref).abs().max())
