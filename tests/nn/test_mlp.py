import pytest
import torch

from pyro_node_uq.nn import (
    BatchedMLP,
    batched_linear,
    flatten_params,
    select_sites,
    unflatten_params,
)


def _batched_params(net, batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch + v, generator=gen) for k, v in net.param_shapes().items()}


@pytest.mark.parametrize("wbatch,ibatch", [((), (5,)), ((4, 1), (4, 5)), ((4, 1), (5,)), ((3,), (3,))])
def test_batched_mlp_matches_loop(wbatch, ibatch):
    net = BatchedMLP("R", (3, 7, 2))
    params = _batched_params(net, wbatch)
    inp = torch.randn(ibatch + (3,))
    out = net(params, inp)
    batch = torch.broadcast_shapes(wbatch, ibatch)
    assert out.shape == batch + (2,)
    for idx in torch.cartesian_prod(*[torch.arange(b) for b in batch]).reshape(-1, len(batch)):
        idx = tuple(int(i) for i in idx)
        p = {k: v.expand(batch + net.param_shapes()[k])[idx] for k, v in params.items()}
        x = inp.expand(batch + (3,))[idx]
        h = torch.tanh(p["R.0.weight"] @ x + p["R.0.bias"])
        ref = p["R.1.weight"] @ h + p["R.1.bias"]
        assert torch.allclose(out[idx], ref, atol=1e-12)


def test_batched_linear_rank_alignment():
    w = torch.randn(8, 1, 4, 3)
    x = torch.randn(5, 3)
    out = batched_linear(x, w)
    assert out.shape == (8, 5, 4)
    assert torch.allclose(out[2, 1], w[2, 0] @ x[1])


def test_param_names_and_flatten_roundtrip():
    net = BatchedMLP("Z", (4, 6, 1))
    shapes = net.param_shapes()
    assert list(shapes) == ["Z.0.weight", "Z.0.bias", "Z.1.weight", "Z.1.bias"]
    params = _batched_params(net, (2, 3))
    flat = flatten_params(params, shapes)
    assert flat.shape == (2, 3, 4 * 6 + 6 + 6 + 1)
    back = unflatten_params(flat, shapes)
    for k in shapes:
        assert torch.equal(back[k], params[k])
    assert select_sites(shapes, "Z.1.*") == ["Z.1.weight", "Z.1.bias"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        BatchedMLP("R", (2, 3), activation="nope")
    with pytest.raises(ValueError, match="sizes"):
        BatchedMLP("R", (2,))
    net = BatchedMLP("R", (2, 3))
    with pytest.raises(ValueError, match="last dim 2"):
        net(net.init_params(), torch.randn(4, 3))
    with pytest.raises(ValueError, match="no site matches"):
        select_sites(["R.0.weight"], "Z.*")
    with pytest.raises(ValueError, match="expected last dim"):
        unflatten_params(torch.randn(5), net.param_shapes())
