"""The ProcessModel protocol: defaults a plain model gets, what NODEModel overrides, divergence mode copies."""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.models import NODEModel, ProcessModel


def test_defaults_and_divergence_copies():
    base = ProcessModel()
    assert base.max_plate_nesting == 1 and base.obs_site == "obs" and base.noise_scale() is None
    copy = base.with_divergence("reject")
    assert copy.on_divergence == "reject" and base.on_divergence == "raise"
    with pytest.raises(ValueError, match="on_divergence: expected 'raise' or 'reject'"):
        base.with_divergence("ignore")
    with pytest.raises(ValueError, match="names no layers"):
        base.layer_sites("last_layer")


def test_node_model_reports_sites_noise_and_hidden_observability():
    model = NODEModel(obs_dim=2, input_dim=1, hidden_dim=3, Z_hidden=None, scale="latent")
    assert model.predict_sites == {"obs": 3, "y_mean": 3, "hidden": 3, "sigma": 1}
    assert model.observes_hidden
    assert not NODEModel(obs_dim=2, input_dim=1, hidden_dim=3).observes_hidden  # a linear Z in between
    assert NODEModel(obs_dim=1, scale=0.3).noise_scale() == 0.3
    sigma = torch.full((4, 2), 0.5)
    assert model.noise_scale(prediction={"sigma": sigma}).shape == (4, 1, 1, 2)  # one scale per draw


def test_fit_and_predict_args_come_from_the_split():
    problem = load_problem("chemical", num_train=2, num_times=5)
    model = problem.default_model()
    args, kwargs = model.fit_args(problem.train)
    assert args[2] is problem.train.y
    args, kwargs = model.predict_args(problem.test)
    assert args[2] is None and kwargs == {"num_trajectories": len(problem.test)}
