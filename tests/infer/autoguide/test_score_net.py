"""Score hypernetworks: zero output at initialisation, the time features and the linear skip by hand, the chain's
cached form equal to the network, the per-site net block-diagonal, and the choice of net by name."""
import math

import pytest
import torch
from torch import nn

from pyro_node_uq.infer.autoguide.score_net import (
    PerSiteScore,
    ScoreMLP,
    _time_features,
    make_score_net,
)


def _randomise(net, seed=0):
    """Every parameter of ``net`` random (the zero-initialised last layers included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return net


def test_time_features_by_hand():
    feats = _time_features(torch.tensor(0.5), torch.Size([3]))
    s, c = [math.sin(math.pi * k / 2) for k in range(1, 5)], [math.cos(math.pi * k / 2) for k in range(1, 5)]
    assert feats.shape == (3, 9)
    torch.testing.assert_close(feats[2], torch.tensor([0.5, *s, *c]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("net", [ScoreMLP(5, hidden=8), ScoreMLP(5, hidden=8, skip_rank=0),
                                 PerSiteScore({"a": 2, "b": 3}, hidden=4)], ids=["mlp", "no_skip", "per_site"])
def test_an_untrained_net_outputs_exactly_zero(net):
    u = torch.randn(4, 5)
    for tau in (0.0, 0.3, 1.0):
        out = net(u, torch.tensor(tau))
        assert out.shape == (4, 5) and torch.equal(out, torch.zeros(4, 5))


def test_the_skip_alone_is_the_low_rank_linear_map_by_hand():
    """MLP output zero, skip gate 1 (time weights zero): ``out = u (U V^T)`` with ``U = skip_in``, ``V = skip_out``."""
    net = ScoreMLP(3, hidden=4, skip_rank=2)
    with torch.no_grad():
        net.skip_in.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        net.skip_out.copy_(torch.tensor([[1.0, 1.0], [0.0, -1.0], [3.0, 0.0]]))
        nn.init.zeros_(net.skip_time.weight)
        nn.init.zeros_(net.skip_time.bias)
    u = torch.tensor([[1.0, 2.0, 3.0]])
    # u @ skip_in = (1 + 3, 4 + 3) = (4, 7); times skip_out^T = (4 + 7, -7, 12)
    torch.testing.assert_close(net(u, torch.tensor(0.7)), torch.tensor([[11.0, -7.0, 12.0]]))
    assert ScoreMLP(40, skip_rank=32).skip_rank == 32 and ScoreMLP(3, skip_rank=32).skip_rank == 3


@pytest.mark.parametrize("make", [lambda: ScoreMLP(5, hidden=8, depth=2),
                                  lambda: PerSiteScore({"a": 2, "b": 3}, hidden=4)], ids=["mlp", "per_site"])
def test_the_chains_cached_form_is_the_net_at_tau_k_over_K(make):
    net = _randomise(make())
    u, K = torch.randn(6, 5), 4
    f = net.chain_fn(K, u.dtype, "cpu")
    for k in range(K):
        torch.testing.assert_close(f(u, k), net(u, torch.tensor(k / K)), rtol=1e-5, atol=1e-5)


def test_the_per_site_net_is_block_diagonal():
    net = _randomise(PerSiteScore({"a": 2, "b": 3}, hidden=4), seed=1)
    u, tau = torch.randn(2, 5), torch.tensor(0.4)
    v = u.clone()
    v[:, 2:] += 1.0  # move only site b
    a, b = net(u, tau), net(v, tau)
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.allclose(a[:, 2:], b[:, 2:])
    torch.testing.assert_close(a[:, :2], net.nets[0](u[:, :2], tau))


def test_make_score_net_by_name_module_or_a_clear_error():
    assert isinstance(make_score_net("mlp", 4, {"x": 4}, hidden=8), ScoreMLP)
    per_site = make_score_net("per_site", 5, {"a": 2, "b": 3})
    assert isinstance(per_site, PerSiteScore) and per_site.sizes == [2, 3] and per_site.names == ["a", "b"]
    own = nn.Linear(4, 4)
    assert make_score_net(own, 4, {}) is own
    with pytest.raises(ValueError, match="score_net must be 'mlp', 'per_site' or an nn.Module, got 'rnn'"):
        make_score_net("rnn", 4, {})
