"""The ODE-net baseline: the SDE-BNN's deterministic twin, fitted by maximum likelihood through the same runner."""
import pytest

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.methods import MethodSkipped, run_odenet


def test_odenet_is_a_deterministic_fit_of_the_same_architecture():
    problem = load_problem("gap_regression", num_train=12, num_test=6)
    model = problem.default_model()
    result = run_odenet(model, problem.train, num_steps=30, lr=2e-2, progress_bar=False)
    assert model.stochastic and not result.model.stochastic  # the caller's SDE-BNN is unchanged
    assert result.elbo is None and result.stochastic_dim == 0 and result.num_model_evals == 30
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    pred = result.predict(problem.test, num_samples=4)
    assert pred["y_mean"].shape == (4, 6, 1) and pred["y_mean"].std(0).max() == 0  # one network for every draw
    assert pred["obs"].std(0).min() > 0  # the observation noise still varies
    with pytest.raises(MethodSkipped, match="odenet: NODEModel brings no guide of its own"):
        chemical = load_problem("chemical", num_train=2)
        run_odenet(chemical.default_model(), chemical.train, num_steps=1, progress_bar=False)


def test_odenet_has_no_posterior_to_convert():
    problem = load_problem("spirals", num_train=6, num_test=4)
    result = run_odenet(problem.default_model(), problem.train, num_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="the posterior has no latent sites to convert"):
        to_inference_data(result, problem.test, num_samples=4)
