"""The mixture reference (:mod:`pyro_node_uq.infer.autoguide.mixture_reference`): each component's S v, S^-1 v,
Mahalanobis size and noise map against that component's dense covariance (particles ``(..., M, D)``), and the
mixture's log density against the equal-weight sum of the components' densities (float64)."""
import math

import pytest
import torch

from pyro_node_uq.infer.autoguide.mixture_reference import MixtureReference

F64 = {"dtype": torch.float64}
LOC = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -1.0]], **F64)
SCALE = torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.5, 0.7]], **F64)
UNIT = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [-1.0, 0.2, 1.0]],
                     [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.8, -0.4, 1.0]]], **F64)
REFS = {"diagonal": MixtureReference.from_scale(LOC, SCALE), "full": MixtureReference.from_scale(LOC, SCALE, UNIT)}


def dense(kind, j):
    """Component ``j``'s covariance, from its definition (``L = diag(s) T`` for the full-rank one)."""
    if kind == "diagonal":
        return torch.diag(SCALE[j] ** 2)
    L = SCALE[j].unsqueeze(-1) * UNIT[j]
    return L @ L.T


@pytest.mark.parametrize("kind", list(REFS))
def test_each_component_acts_with_its_own_covariance(kind):
    ref = REFS[kind]
    v = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0), **F64)  # (particles, M, D)
    for j in range(2):
        S = dense(kind, j)
        assert torch.allclose(ref.apply(v)[:, j], v[:, j] @ S)
        assert torch.allclose(ref.solve(v)[:, j], v[:, j] @ torch.linalg.inv(S))
        assert torch.allclose(ref.mahalanobis(v)[:, j], (v[:, j] @ torch.linalg.inv(S) * v[:, j]).sum(-1))
        assert torch.allclose(ref.marginal_std()[j], S.diagonal().sqrt())
        L = ref.noise(torch.eye(3, **F64).unsqueeze(-2).expand(3, 2, 3))[:, j].T  # columns: images of unit noise
        assert torch.allclose(L @ L.T, S)


@pytest.mark.parametrize("kind", list(REFS))
def test_log_prob_is_the_equal_weight_mixture(kind):
    ref = REFS[kind]
    z = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.1, -1.2], [1.0, -1.0, 1.0]], **F64)
    parts = torch.stack([torch.distributions.MultivariateNormal(LOC[j], dense(kind, j)).log_prob(z)
                         for j in range(2)], -1)
    assert torch.allclose(ref.component_log_prob(z), parts)
    expected = torch.log(0.5 * parts.exp().sum(-1))
    assert torch.allclose(ref.log_prob(z), expected)


def test_one_component_is_a_single_gaussian():
    ref = MixtureReference.from_scale(LOC[:1], SCALE[:1], UNIT[:1])
    z = torch.tensor([[0.1, 0.2, 0.3]], **F64)
    L = SCALE[0].unsqueeze(-1) * UNIT[0]
    assert torch.allclose(ref.log_prob(z), torch.distributions.MultivariateNormal(LOC[0], scale_tril=L).log_prob(z))
    assert ref.num_components == 1 and math.isclose(float(ref.log_prob(LOC[:1])),
                                                    float(ref.component_log_prob(LOC[:1])[0, 0]))
