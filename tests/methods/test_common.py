"""What every runner shares: a plain Pyro model seen through the protocol, warm-start cost added once, the model's
own parameters carried over from a warm start."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from pyro_node_uq.data import Split
from pyro_node_uq.methods import (
    MethodResult,
    as_process_model,
    carry_model_params,
    run_autonormal,
    run_map,
)
from pyro_node_uq.methods.common import with_start_cost
from pyro_node_uq.models import PlainModel


def regression(t, x=None, y=None, num_trajectories=None):
    """y_n(t) = a t + noise, with a latent slope and a per-trajectory offset inside a plate."""
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    with pyro.plate("trajectories", num_trajectories or y.shape[0], dim=-1):
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        mean = a[..., None, None] * t[:, None] + b[..., None, None]  # (..., N, T, 1)
        return pyro.sample("obs", dist.Normal(mean, 0.1).to_event(2), obs=y)


@pytest.fixture
def split():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    y = 2.0 * t[:, None] + torch.tensor([0.5, -0.5], dtype=torch.float64)[:, None, None]
    return Split(t=t, x=None, y=y)


def test_a_plain_model_gets_its_plate_depth_from_one_trace(split):
    model = as_process_model(regression, split)
    assert isinstance(model, PlainModel) and model.max_plate_nesting == 1
    assert as_process_model(model) is model
    with pytest.raises(ValueError, match="not a ProcessModel; give the data split"):
        as_process_model(regression)


def test_runners_fit_a_plain_model_with_a_latent_inside_a_plate(split):
    res = run_autonormal(regression, split, num_steps=300, map_steps=300, lr=0.05, num_particles=4,
                         progress_bar=False, elbo_particles=8)
    draws = res.posterior_samples(200)
    assert draws["b"].shape == (200, 2)
    assert abs(float(draws["a"].mean()) - 2.0) < 0.3  # the slope of the data
    assert float(draws["b"].mean(0)[0] - draws["b"].mean(0)[1]) == pytest.approx(1.0, abs=0.3)
    assert res.predict(split, num_samples=3)["obs"].shape == (3, 2, 5, 1)


def test_start_cost_is_added_once_and_none_adds_nothing():
    start = MethodResult("map", None, wall_time=2.0, num_model_evals=10)
    res = with_start_cost(MethodResult("x", None, wall_time=1.0, num_model_evals=3), start)
    assert (res.wall_time, res.num_model_evals) == (3.0, 13)
    assert with_start_cost(res, None).num_model_evals == 13


def test_a_warm_start_carries_the_models_own_params_not_the_guides(split):
    def noisy(t, x=None, y=None, num_trajectories=None):
        sigma = pyro.param("sigma", torch.tensor(1.0, dtype=t.dtype), constraint=constraints.positive)
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        with pyro.plate("trajectories", y.shape[0], dim=-1):
            pyro.sample("obs", dist.Normal(a * t[:, None], sigma).to_event(2), obs=y)

    fit = run_map(noisy, split, num_steps=200, lr=0.05, progress_bar=False)
    learned = fit.param_state["params"]["sigma"].detach().exp()
    assert float(learned) < 0.9  # it moved from its initial 1.0
    pyro.clear_param_store()
    carry_model_params(fit)
    assert set(pyro.get_param_store().keys()) == {"sigma"}  # the AutoDelta's own params stay behind
    torch.testing.assert_close(pyro.param("sigma").detach(), learned.detach())


def test_particle_counts_are_checked_by_name_for_every_guide_method(split):
    """Found by the long fuzz run: ``num_particles=0.0`` reached Pyro's ELBO as a float (a raw TypeError)."""
    with pytest.raises(ValueError, match="num_particles: expected an integer >= 1, got 0"):
        run_map(regression, split, num_steps=1, num_particles=0.0, progress_bar=False)
    with pytest.raises(ValueError, match="elbo_particles: expected an integer >= 0"):
        run_autonormal(regression, split, num_steps=1, map_steps=1, elbo_particles=-1, progress_bar=False)
