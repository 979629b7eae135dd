"""The hand-written Runge-Kutta solve of a tanh MLP field: one Euler step by hand, states equal to a plain autograd
loop, and its backward (the discrete adjoint) checked against finite differences by ``gradcheck``."""
import pytest
import torch

from pyro_node_uq.distributions.rk_backprop import rk_solve, rk_steps
from pyro_node_uq.distributions.solvers import RK4, Euler, Heun

B, H, N1, M, D = 2, 2, 3, 4, 1


def _field(gen, inputs):
    """Weights of ``f(h) = W2 tanh(W1 h + W_x x + b1) + b2`` for B members (float64)."""
    r = lambda *s: 0.5 * torch.randn(*s, generator=gen, dtype=torch.float64)
    return {"w_in": r(B, N1, D if inputs else 0), "b_in": r(B, N1, 1), "W1": r(B, N1, H), "W2": r(B, H, N1),
            "b2": r(B, H, 1)}


def _reference(h, x, p, dt, scheme):
    """The same solve, step by step with autograd."""
    def f(y, xi):
        u = p["W1"] @ y + p["b_in"]
        if xi is not None:
            u = u + p["w_in"] @ xi
        return p["W2"] @ torch.tanh(u) + p["b2"]

    tab, states = scheme.tableau, [h]
    for k in range(len(dt)):
        y, ks = states[-1], []
        for i, row in enumerate(tab.a):
            yi = y + sum(dt[k] * a * kj for a, kj in zip(row, ks))
            ks.append(f(yi, None if x is None else x[k, i]))
        states.append(y + sum(dt[k] * bi * ki for bi, ki in zip(tab.b, ks)))
    return torch.stack(states)


def _solve(h, x, p, dt, scheme, fn=rk_solve):
    tab = scheme.tableau
    return fn(h, x, p["w_in"], p["b_in"], dt, [p["W1"], p["W2"]], [p["b2"]], tab.a, tab.b)


def test_one_euler_step_by_hand():
    gen = torch.Generator().manual_seed(0)
    p, h = _field(gen, inputs=False), torch.randn(B, H, M, generator=gen, dtype=torch.float64)
    dt = torch.tensor([0.1], dtype=torch.float64)
    out = _solve(h.contiguous(), None, p, dt, Euler())
    assert out.shape == (2, B, H, M) and torch.equal(out[0], h)
    torch.testing.assert_close(out[1], h + 0.1 * (p["W2"] @ torch.tanh(p["W1"] @ h + p["b_in"]) + p["b2"]))


@pytest.mark.parametrize("scheme", [Euler(), Heun(), RK4()], ids=lambda s: s.name)
@pytest.mark.parametrize("inputs", [False, True], ids=["no_inputs", "inputs"])
def test_states_equal_an_autograd_loop_with_and_without_gradient(scheme, inputs):
    gen = torch.Generator().manual_seed(1)
    p, h = _field(gen, inputs), torch.randn(B, H, M, generator=gen, dtype=torch.float64)
    dt = torch.tensor([0.2, 0.1, 0.3], dtype=torch.float64)  # uneven steps
    S = scheme.tableau.stages
    x = torch.randn(3, S, B, D, M, generator=gen, dtype=torch.float64) if inputs else None
    want = _reference(h, x, p, dt, scheme)
    torch.testing.assert_close(_solve(h, x, p, dt, scheme), want)
    torch.testing.assert_close(_solve(h, x, p, dt, scheme, rk_steps), want)


@pytest.mark.parametrize("scheme", [Euler(), RK4()], ids=lambda s: s.name)
def test_the_hand_written_backward_passes_gradcheck(scheme):
    gen = torch.Generator().manual_seed(2)
    p = _field(gen, inputs=True)
    h = torch.randn(B, H, M, generator=gen, dtype=torch.float64)
    dt = torch.tensor([0.2, 0.3], dtype=torch.float64)
    x = torch.randn(2, scheme.tableau.stages, B, D, M, generator=gen, dtype=torch.float64)
    names = list(p)
    leaves = [h.requires_grad_()] + [p[k].requires_grad_() for k in names]

    def solve(h, *weights):
        return _solve(h, x, dict(zip(names, weights)), dt, scheme)

    assert torch.autograd.gradcheck(solve, leaves, eps=1e-6, atol=1e-6)
