"""The elastoplastic problem: the return mapping that simulates it."""
import pytest
import torch

from pyro_node_uq.data import return_mapping


def test_elastoplastic_return_mapping():
    eps = torch.cat([torch.linspace(0, 3, 301), torch.linspace(3, -3, 601)[1:]])[None].double()
    sigma, ep, al, p = return_mapping(eps)
    xi = sigma - al
    assert (xi.abs() <= 1.0 + 0.1 * p + 1e-9).all()  # never outside the yield surface
    assert sigma[0, 50] == pytest.approx(0.5)  # elastic branch
    assert torch.all(p[:, 1:] >= p[:, :-1])  # accumulated plastic strain never decreases
    assert torch.allclose(al, 0.2 * ep)  # linear kinematic hardening
