"""Device and dtype moves keep non-floating tensors' dtypes and every non-tensor as it is; fast shape broadcasting."""
import pytest
import torch

from pyro_node_uq.utils import broadcast_shapes, move_tensors


def test_move_tensors_is_nested_and_keeps_integer_dtypes():
    values = {"a": [torch.zeros(2), (torch.arange(3), "label")], "n": None}
    out = move_tensors(values, dtype=torch.float64, device="cpu")
    assert out["a"][0].dtype == torch.float64 and out["a"][1][0].dtype == torch.int64
    assert out["a"][1][1] == "label" and out["n"] is None and isinstance(out["a"][1], tuple)



@pytest.mark.parametrize("shapes", [((1, 1), (16,), ()), ((3, 1, 4), (5, 1)), ((2,), (2,)), ((),), ((0, 1), (3,)),
                                    ((7, 1, 1), (1, 6, 1), (1, 1, 5))])
def test_broadcast_shapes_agrees_with_torch(shapes):
    assert broadcast_shapes(*shapes) == torch.broadcast_shapes(*shapes)


def test_broadcast_shapes_refuses_what_torch_refuses():
    with pytest.raises(RuntimeError, match="do not broadcast"):
        broadcast_shapes((3, 2), (4, 2))
