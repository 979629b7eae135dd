"""The kernel's drift terms (:mod:`pyro_node_uq.infer.mcmc.score`) on a Gaussian with a known score."""
import pytest
import torch

from pyro_node_uq.infer.mcmc.score import BlendedScore, ExactScore, LearnedScore

Z = torch.tensor([[1.0, -2.0], [0.5, 0.0]])


def energy(z, with_grad):
    """``U = |z - 1|^2 / 2``: its score is ``1 - z``."""
    return 0.5 * ((z - 1) ** 2).sum(-1), (z - 1 if with_grad else None)


def learned(z):
    return -z  # a wrong score (that of N(0, I))


def test_exact_score_is_minus_the_potential_gradient():
    U, g = ExactScore()(Z, energy)
    assert torch.equal(U, torch.tensor([4.5, 0.625])) and torch.equal(g, 1 - Z)


def test_learned_score_needs_no_potential_unless_given_one():
    U, g = LearnedScore(learned)(Z, None)
    assert U is None and torch.equal(g, -Z)
    U, _ = LearnedScore(learned)(Z, energy)
    assert torch.equal(U, torch.tensor([4.5, 0.625]))


@pytest.mark.parametrize("w", [0.0, 0.25, 1.0])
def test_blend_is_the_convex_combination(w):
    U, g = BlendedScore(w, LearnedScore(learned))(Z, energy)
    assert torch.equal(U, torch.tensor([4.5, 0.625]))
    assert torch.allclose(g, w * (1 - Z) + (1 - w) * (-Z))


def test_blend_weight_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="exact_weight must lie in"):
        BlendedScore(1.5, LearnedScore(learned))
