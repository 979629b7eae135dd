"""Chains and ensemble members split over 2 gloo processes are gathered on rank 0 and equal the 1-process run."""
import pytest
import torch

from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.infer.distributed import map_across_ranks
from pyro_node_uq.methods import MethodResult, run_chains

from .workers import chains, ensemble, toy_model, toy_split


@pytest.mark.parametrize("what", ["chains", "ensemble"])
def test_runs_split_across_two_processes_equal_one_process(two_processes, what):
    reference = {"chains": chains, "ensemble": ensemble}[what]()
    assert two_processes[1][what] is None  # only rank 0 holds the gathered result
    got = two_processes[0][what]
    assert got.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(got[key], value), key


def test_chains_have_the_chain_shape_and_convert_to_inference_data():
    samples = chains()
    assert samples["mu"].shape == (6, 8)  # 3 runs x 2 particles, 8 draws each
    assert not torch.equal(samples["mu"][0], samples["mu"][2])  # runs are seeded apart
    idata = to_inference_data(MethodResult(name="chains", model=toy_model, samples=samples), toy_split())
    assert idata.posterior.sizes["chain"] == 6 and idata.posterior.sizes["draw"] == 8


def test_map_across_ranks_keeps_order_and_names_too_few_items():
    assert map_across_ranks(lambda i: i * i, range(4)) == [0, 1, 4, 9]
    with pytest.raises(ValueError, match="0 items cannot be shared by 1 processes"):
        run_chains(toy_model, None, toy_split(), num_chains=0, num_samples=1)
