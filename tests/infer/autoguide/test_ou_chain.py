"""The controlled OU chain (:mod:`pyro_node_uq.infer.autoguide.ou_chain`): one step against hand-computed values,
the reference kept exactly without drift, the path KL of a drift, clipping and rejection."""
import math

import torch

from pyro_node_uq.infer.autoguide import ou_chain
from pyro_node_uq.infer.autoguide.reference import DiagonalReference

REF = DiagonalReference(torch.tensor([1.0]), torch.tensor([2.0]))
H = torch.tensor(math.log(2.0))  # a = exp(-h) = 1/2, 1 - a^2 = 3/4


def constant(c, ok=None):
    return lambda z, k, K, reference, cap: (torch.full_like(z, c), ok)


def no_drift(z, k, K, reference, cap):
    return None, None


def test_init_is_a_reference_draw():
    state = ou_chain.init(REF, torch.tensor([[0.5]]))
    assert state.z.item() == 2.0 and state.path_kl.item() == 0.0  # m + s xi = 1 + 2 * 0.5


def test_one_step_by_hand():
    # z' = m + a (z - m) + (1 - a) c + sqrt(1 - a^2) s xi = 1 + 0.5 * 2 + 0.5 * 0.8 + sqrt(0.75) * 2 * 0.1
    # KL  = 0.5 * ((1 - a) c)^2 / s^2 / (1 - a^2) = 0.5 * 0.16 / 4 / 0.75
    state = ou_chain.ChainState(torch.tensor([[3.0]]), torch.zeros(1))
    new, info = ou_chain.step(state, torch.tensor([[0.1]]), k=0, num_steps=1, reference=REF, drift=constant(0.8),
                              step_size=H, bound=10.0)
    assert math.isclose(new.z.item(), 2.4 + math.sqrt(0.75) * 0.2, rel_tol=1e-12)
    assert math.isclose(new.path_kl.item(), 0.5 * 0.16 / 4 / 0.75, rel_tol=1e-12)
    assert math.isclose(info.path_kl.item(), new.path_kl.item()) and not info.clipped.item()


def test_without_drift_the_reference_is_kept_exactly():
    """Started at r, K uncontrolled steps leave r: mean and variance within 5 standard errors (40000 members)."""
    gen = torch.Generator().manual_seed(0)
    P = 40000
    state = ou_chain.init(REF, torch.randn(P, 1, generator=gen))
    for k in range(5):
        state, _ = ou_chain.step(state, torch.randn(P, 1, generator=gen), k=k, num_steps=5, reference=REF,
                                 drift=no_drift, step_size=torch.tensor(0.3), bound=10.0)
    z = state.z.squeeze(-1)
    assert abs(z.mean().item() - 1.0) < 5 * 2 / math.sqrt(P)
    assert abs(z.var().item() - 4.0) < 5 * 4 * math.sqrt(2 / P)
    assert state.path_kl.eq(0).all()


def test_a_large_drift_is_clipped_and_its_kl_capped():
    state = ou_chain.ChainState(torch.tensor([[1.0]]), torch.zeros(1))
    new, info = ou_chain.step(state, torch.zeros(1, 1), k=0, num_steps=1, reference=REF, drift=constant(1e6),
                              step_size=H, bound=3.0)
    # the applied drift has whitened size exactly bound: (1 - a) c' / s / sqrt(1 - a^2) = 3
    assert info.clipped.item() and math.isclose(new.path_kl.item(), 4.5)
    assert math.isclose(new.z.item(), 1.0 + 3.0 * 2 * math.sqrt(0.75), rel_tol=1e-12)


def test_non_finite_or_refused_drifts_are_rejected_to_zero():
    state = ou_chain.ChainState(torch.tensor([[1.0], [1.0]]), torch.zeros(2))
    for drift in (constant(math.nan), constant(0.5, ok=torch.tensor([False, False]))):
        new, info = ou_chain.step(state, torch.zeros(2, 1), k=0, num_steps=1, reference=REF, drift=drift,
                                  step_size=H, bound=10.0)
        assert info.rejected.all() and torch.equal(new.z, state.z) and new.path_kl.eq(0).all()
