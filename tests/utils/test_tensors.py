"""Device and dtype moves keep non-floating tensors' dtypes and every non-tensor as it is."""
import torch

from pyro_node_uq.utils import move_tensors


def test_move_tensors_is_nested_and_keeps_integer_dtypes():
    values = {"a": [torch.zeros(2), (torch.arange(3), "label")], "n": None}
    out = move_tensors(values, dtype=torch.float64, device="cpu")
    assert out["a"][0].dtype == torch.float64 and out["a"][1][0].dtype == torch.int64
    assert out["a"][1][1] == "label" and out["n"] is None and isinstance(out["a"][1], tuple)

