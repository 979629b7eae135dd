"""Drift terms of the Langevin guide (:mod:`pyro_node_uq.infer.autoguide.drift`) against hand-computed values."""
import math

import torch

from pyro_node_uq.infer.autoguide.drift import DriftSum, ExactDrift, LearnedDrift
from pyro_node_uq.infer.autoguide.reference import DiagonalReference

REF = DiagonalReference(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 0.5]))


def gaussian_log_density(z):
    """``log N(z; (1, 1), I)`` up to a constant: score ``(1, 1) - z``."""
    return -0.5 * ((z - 1) ** 2).sum(-1)


def test_learned_drift_whitens_and_rescales():
    seen = {}

    def net(u, tau):
        seen["u"], seen["tau"] = u, tau
        return torch.ones_like(u)

    c, ok = LearnedDrift(net)(torch.tensor([[2.0, 2.0]]), 3, 4, REF, None)
    assert torch.equal(seen["u"], torch.tensor([[1.0, 2.0]])) and seen["tau"].item() == 0.75  # (z - m) / s, k / K
    assert torch.equal(c, torch.tensor([[2.0, 0.5]])) and ok is None  # s * net


def test_exact_drift_by_hand():
    # e = grad log p - grad log r = ((1, 1) - z) + S^-1 (z - m); at z = (2, 2): (-1, -1) + (0.5, 4) = (-0.5, 3)
    # c = lambda_k S e = 0.5 * (4 * -0.5, 0.25 * 3)
    z = torch.tensor([[2.0, 2.0]])
    c, ok = ExactDrift(gaussian_log_density, torch.tensor([0.1, 0.5]))(z, 1, 2, REF, cap=100.0)
    assert torch.allclose(c, torch.tensor([[-1.0, 0.375]])) and ok.all()
    grad, ok = ExactDrift(gaussian_log_density, None).score(z)
    assert torch.equal(grad, torch.tensor([[-1.0, -1.0]])) and ok.all()


def test_exact_drift_caps_huge_gradients_and_rejects_non_finite_ones():
    def steep(z):
        return -1e30 * z.sum(-1) + torch.where(z[..., 0] > 5, torch.full_like(z[..., 0], math.nan), 0 * z[..., 0])

    z = torch.tensor([[0.0, 1.0], [9.0, 1.0]])
    e, ok = ExactDrift(steep, None).direction(z, REF, cap=1.0)
    assert ok.tolist() == [True, False] and torch.equal(e[1], torch.zeros(2))
    size = (e[0] * REF.apply(e[0])).sum().sqrt()  # whitened size sqrt(e^T S e), capped at 1e3 * cap
    assert math.isclose(size.item(), 1e3, rel_tol=1e-9) and torch.isfinite(e).all()


def test_drift_sum_adds_terms_and_combines_their_flags():
    def a(z, k, K, reference, cap):
        return torch.ones_like(z), torch.tensor([True, False])

    def b(z, k, K, reference, cap):
        return 2 * torch.ones_like(z), None

    c, ok = DriftSum(a, b)(torch.zeros(2, 2), 0, 1, REF, None)
    assert torch.equal(c, torch.full((2, 2), 3.0)) and ok.tolist() == [True, False]
