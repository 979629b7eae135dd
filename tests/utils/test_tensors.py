"""Device and dtype moves keep non-floating tensors' dtypes and every non-tensor as it is."""
import torch

from pyro_node_uq.utils import move_tensors, seeded_generator, tensor_options


def test_move_tensors_is_nested_and_keeps_integer_dtypes():
    values = {"a": [torch.zeros(2), (torch.arange(3), "label")], "n": None}
    out = move_tensors(values, dtype=torch.float64, device="cpu")
    assert out["a"][0].dtype == torch.float64 and out["a"][1][0].dtype == torch.int64
    assert out["a"][1][1] == "label" and out["n"] is None and isinstance(out["a"][1], tuple)


def test_tensor_options_follow_the_first_tensor_unless_given():
    assert tensor_options(None, torch.zeros(1, dtype=torch.float64))["dtype"] == torch.float64
    assert tensor_options(torch.zeros(1), dtype=torch.float16)["dtype"] == torch.float16
    assert tensor_options()["dtype"] == torch.get_default_dtype()


def test_seeded_generators_repeat_and_differ_by_seed():
    a, b = (torch.rand(3, generator=seeded_generator(s)) for s in (1, 1))
    assert torch.equal(a, b) and not torch.equal(a, torch.rand(3, generator=seeded_generator(2)))
