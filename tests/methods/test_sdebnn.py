"""The SDE-BNN method runner: it fits the model's own guide into a MethodResult (cost counted, the caller's model
left untouched, minibatches through the guide's plate), continues from a warm start, and the generic methods and
the SDE-BNN runner each skip the models they do not apply to."""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import METHODS, MethodSkipped, run_map, run_sdebnn


@pytest.fixture(scope="module")
def problem():
    return load_problem("gap_regression", num_train=12, num_test=6, num_extrapolation=6)


def test_fit_trains_a_copy_and_predicts(problem):
    model = problem.default_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_sdebnn(model, problem.train, num_steps=40, lr=2e-2, num_particles=2, progress_bar=False,
                        elbo_particles=8)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the caller's model as it was
    assert result.model is not model and result.guide == result.model.guide
    assert sum(result.losses[-5:]) < sum(result.losses[:5]) and result.elbo is not None
    assert result.num_model_evals == 40 * 2 and result.stochastic_dim == model.num_weights
    pred = result.predict(problem.extrapolation, num_samples=5)
    assert pred["y_mean"].shape == (5, 6, 1) and pred["obs"].shape == (5, 6, 1)
    assert pred["y_mean"].std(0).min() > 0  # a weight path per draw


def test_minibatches_and_warm_start_add_up(problem):
    first = run_sdebnn(problem.default_model(), problem.train, num_steps=3, batch_size=5, progress_bar=False,
                       elbo_particles=0, num_particles=4)
    assert first.num_model_evals == 3 * 4  # num_particles=4; the batch size does not change the count
    more = run_sdebnn(problem.default_model(), problem.train, warm_start=first, num_steps=2, progress_bar=False,
                      elbo_particles=0, num_particles=4)
    assert more.num_model_evals == first.num_model_evals + 2 * 4
    assert more.wall_time > first.wall_time
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1"):
        run_sdebnn(problem.default_model(), problem.train, num_steps=1, batch_size=0, progress_bar=False)


def test_each_method_skips_the_models_it_does_not_apply_to(problem):
    with pytest.raises(MethodSkipped, match="path law with no density"):
        run_map(problem.default_model(), problem.train, num_steps=1, progress_bar=False)
    chemical = load_problem("chemical", num_train=2)
    with pytest.raises(MethodSkipped, match="brings no guide of its own"):
        run_sdebnn(chemical.default_model(), chemical.train, num_steps=1, progress_bar=False)
    assert METHODS["sdebnn"].options("gap_regression", quick=True)["num_steps"] == 300
