"""The viscoelastic problem: its simulated truth."""
import torch

from pyro_node_uq.data import load_problem


def test_viscoelastic_truth():
    p = load_problem("viscoelastic", dtype=torch.float64)
    s = p.test
    eps, ev = s.x[..., 0:1], s.h_true
    assert torch.allclose(s.y_true, 1.0 * eps + 2.0 * (eps - ev))
