"""The MALA / ULA transition (:mod:`pyro_node_uq.infer.mcmc.mala`): one step against hand-computed values, and
the invariants every step keeps (the target is invariant, divergences never move the chain)."""
import math

import torch

from pyro_node_uq.infer.mcmc import mala


def standard_normal(z):
    """``U = |z|^2 / 2`` and the exact drift ``g = -z`` of a standard normal target."""
    return 0.5 * (z ** 2).sum(-1), -z


def test_one_step_against_hand_computed_values():
    # z = 1, eps = 0.5, m = 4, xi = 1:  z' = 1 + 0.125 * 4 * (-1) + 0.5 * 2 * 1 = 1.5
    # log alpha = U(z) - U(z') + log q(z | z') - log q(z' | z) = 0.5 - 1.125 - 0.5 * 0.25^2 + 0.5 * 1^2 = -0.15625
    state = mala.init(torch.tensor([[1.0]]), standard_normal)
    proposed, log_alpha, divergent = mala.propose(state, torch.tensor([[1.0]]), step_size=0.5,
                                                  variances=torch.tensor([4.0]), evaluate=standard_normal)
    assert proposed.z.item() == 1.5 and proposed.potential.item() == 1.125 and proposed.drift.item() == -1.5
    assert log_alpha.item() == -0.15625 and not divergent.item()
    # accepted when u < alpha = exp(-0.15625) = 0.8553..., rejected otherwise
    for u, moves in ((0.85, True), (0.86, False)):
        new, info = mala.step(state, torch.tensor([[1.0]]), torch.tensor([u]), step_size=0.5,
                              variances=torch.tensor([4.0]), evaluate=standard_normal)
        assert math.isclose(info.accept_prob.item(), math.exp(-0.15625))
        assert info.accepted.item() == moves and new.z.item() == (1.5 if moves else 1.0)
        assert new.potential.item() == (1.125 if moves else 0.5)


def test_the_target_is_invariant():
    """Chains started at exact draws of N(0, 1) stay N(0, 1) after a MALA step (mean and variance within 5
    standard errors over 40000 chains)."""
    gen = torch.Generator().manual_seed(0)
    P = 40000
    state = mala.init(torch.randn(P, 1, generator=gen), standard_normal)
    for _ in range(3):
        xi, u = torch.randn(P, 1, generator=gen), torch.rand(P, generator=gen)
        state, info = mala.step(state, xi, u, step_size=1.5, variances=torch.ones(1), evaluate=standard_normal)
    z = state.z.squeeze(-1)
    assert abs(z.mean().item()) < 5 / math.sqrt(P)
    assert abs(z.var().item() - 1.0) < 5 * math.sqrt(2 / P)
    assert 0.2 < info.accepted.double().mean().item() < 0.95  # a real test: many proposals rejected


def test_ula_takes_every_finite_move():
    state = mala.init(torch.tensor([[1.0], [2.0]]), lambda z: (None, -z))
    new, info = mala.step(state, torch.tensor([[1.0], [-1.0]]), None, step_size=0.5, variances=torch.ones(1),
                          evaluate=lambda z: (None, -z))
    assert torch.equal(new.z, torch.tensor([[1.375], [1.25]]))  # z + 0.125 * (-z) + 0.5 * xi
    assert new.potential is None and info.accepted.all() and torch.equal(info.accept_prob, torch.ones(2))


def test_divergences_never_move_and_never_give_nan():
    def evaluate(z):  # a potential that is infinite beyond 2 and explodes beyond 1.4
        U = torch.where(z.squeeze(-1) > 2, torch.full_like(z.squeeze(-1), math.inf), 1e4 * (z.squeeze(-1) > 1.4))
        return U, -z

    state = mala.init(torch.tensor([[0.0], [0.0], [0.0]]), evaluate)
    xi = torch.tensor([[5.0], [3.0], [0.1]])  # proposals 2.5 (inf), 1.5 (energy error 1e4), 0.05
    new, info = mala.step(state, xi, torch.zeros(3), step_size=0.5, variances=torch.ones(1), evaluate=evaluate)
    assert info.divergent.tolist() == [True, True, False]
    assert info.accepted.tolist() == [False, False, True]
    assert new.z[:2].eq(0).all() and torch.isfinite(new.z).all() and torch.isfinite(new.potential).all()
    assert info.accept_prob[0].item() == 0.0


def test_a_covariance_matrix_preconditioner():
    """With C = L L^T: z' = z + eps^2 / 2 C g + eps L xi, and a diagonal C moves exactly as its variances."""
    C = torch.tensor([[4.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    L = torch.linalg.cholesky(C)
    z, xi = torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    state = mala.init(z, standard_normal)
    proposed, log_alpha, _ = mala.propose(state, xi, step_size=0.5, variances=C, evaluate=standard_normal)
    assert torch.allclose(proposed.z, z + 0.125 * (-z) @ C + 0.5 * xi @ L.T)
    back = z - proposed.z - 0.125 * proposed.drift @ C
    expected = 0.5 * (z ** 2).sum() - 0.5 * (proposed.z ** 2).sum() - 0.5 * (back @ torch.linalg.inv(C) @ back.T
                                                                            ).sum() / 0.25 + 0.5 * (xi ** 2).sum()
    assert torch.allclose(log_alpha, expected.reshape(1))
    m = torch.tensor([4.0, 2.0], dtype=torch.float64)
    diag = mala.propose(state, xi, step_size=0.5, variances=torch.diag(m), evaluate=standard_normal)
    vec = mala.propose(state, xi, step_size=0.5, variances=m, evaluate=standard_normal)
    assert torch.allclose(diag[0].z, vec[0].z) and torch.allclose(diag[1], vec[1])
