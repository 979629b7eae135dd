"""CountingModel counts ensemble members through plates."""
import pyro
import pyro.distributions as dist
import torch

from pyro_node_uq.infer import CountingModel


def test_counting_model_plates():
    def model():
        with pyro.plate("trajectories", 3):
            pyro.sample("obs", dist.Normal(0.0, 1.0), obs=torch.zeros(3))

    counted = CountingModel(model)
    counted()
    with pyro.plate("particles", 5, dim=-2):
        counted()
    assert counted.count == 1 + 5
