"""Gaussian references (:mod:`pyro_node_uq.infer.autoguide.reference`): S v, S^-1 v, the noise map L with
L L^T = S and the marginal std, against the dense covariance."""
import pytest
import torch

from pyro_node_uq.infer.autoguide.reference import DiagonalReference, LowRankReference

LOC = torch.tensor([0.5, -1.0, 2.0])
SCALE = torch.tensor([1.0, 0.5, 2.0])
FACTOR = torch.tensor([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])  # relative to the scale


def dense(ref):
    """The reference's covariance S as a dense matrix, from its definition."""
    if isinstance(ref, LowRankReference):
        W = SCALE.unsqueeze(-1) * FACTOR
        return W @ W.T + torch.diag(SCALE ** 2)
    return torch.diag(SCALE ** 2)


REFS = [DiagonalReference(LOC, SCALE), LowRankReference(LOC, SCALE, FACTOR)]


def test_diagonal_by_hand():
    ref = DiagonalReference(LOC, SCALE)
    v = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(ref.apply(v), torch.tensor([1.0, 0.5, 12.0]))
    assert torch.equal(ref.solve(v), torch.tensor([1.0, 8.0, 0.75]))
    assert ref.noise_dim == 3 and torch.equal(ref.marginal_std(), SCALE)


@pytest.mark.parametrize("ref", REFS, ids=["diagonal", "lowrank"])
def test_algebra_matches_the_dense_covariance(ref):
    S, v = dense(ref), torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]])
    assert torch.allclose(ref.apply(v), v @ S)
    assert torch.allclose(ref.solve(ref.apply(v)), v)
    assert torch.allclose(ref.marginal_std(), S.diagonal().sqrt())
    # the noise map L (columns: images of the unit noise vectors) satisfies L L^T = S
    L = ref.noise(torch.eye(ref.noise_dim)).T
    assert torch.allclose(L @ L.T, S)
    assert torch.allclose(ref.distribution().log_prob(v),
                          torch.distributions.MultivariateNormal(LOC, S).log_prob(v))


def test_low_rank_noise_dim_counts_the_factor_columns():
    assert LowRankReference(LOC, SCALE, FACTOR).noise_dim == 5
