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


def test_a_divergence_view_counts_into_the_same_total():
    from pyro_node_uq.data import load_problem

    problem = load_problem("chemical", num_train=2, num_times=5)
    counted = CountingModel(problem.default_model(R_hidden=(4,)))
    view = counted.with_divergence("reject")
    assert view.model.on_divergence == "reject" and counted.model.on_divergence == "raise"
    counted(*problem.train.args)
    view(*problem.train.args)
    assert counted.count == view.count == 2
