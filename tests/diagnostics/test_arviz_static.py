"""The ArviZ converter on a static model: dims, one log-likelihood value per point equal to the model's own
log density, and posterior draws made on the converted split's inputs."""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.methods import run_sdebnn


@pytest.mark.parametrize("name", ["gap_regression", "spirals"])
def test_static_inference_data(name):
    problem = load_problem(name, num_train=10, num_test=7)
    result = run_sdebnn(problem.default_model(), problem.train, num_steps=3, progress_bar=False, elbo_particles=0)
    idata = to_inference_data(result, problem.test, num_samples=8, num_chains=2, output_names=problem.obs_names,
                              input_names=problem.input_names)
    ll = idata.log_likelihood["obs"]
    assert ll.dims == ("chain", "draw", "observation") and ll.shape == (2, 4, 7)
    assert idata.posterior["features"].dims[:3] == ("chain", "draw", "observation")  # features of test inputs
    assert list(idata.constant_data["x"].dims) == ["observation", "input"]
    if name == "spirals":
        probs = torch.as_tensor(idata.posterior["probs"].values)
        labels = problem.test.y
        expected = probs.gather(-1, labels.expand(2, 4, 7)[..., None])[..., 0].log()
        assert list(idata.posterior["probs"].coords["class"].values) == [0, 1, 2]
    else:
        mean, scale = torch.as_tensor(idata.posterior["y_mean"].values), result.model.obs_scale.detach()
        expected = torch.distributions.Normal(mean, scale).log_prob(problem.test.y).sum(-1)
        assert idata.observed_data["obs"].dims == ("observation", "output")
    torch.testing.assert_close(torch.as_tensor(ll.values), expected.double(), rtol=1e-5, atol=1e-5)
