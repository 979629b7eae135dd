"""The chemical-kinetics problem: its simulated truth."""
import pytest
import torch

from pyro_node_uq.data import load_problem


def test_chemical_truth():
    p = load_problem("chemical")
    h = p.train.h_true
    assert torch.allclose(h.sum(-1), torch.ones(()), atol=1e-5)  # mass conservation A + B + C = 1
    assert (h[..., 2] >= -1e-6).all() and torch.equal(p.train.y_true, h[..., :2])
    assert (p.train.y - p.train.y_true).std() == pytest.approx(0.02, rel=0.1)
    amp = lambda s: s.x.abs().amax((1, 2)).mean()
    assert amp(p.extrapolation) > 1.5 * amp(p.train)  # unseen temperature amplitudes (U(35,50) vs U(10,30) K)
