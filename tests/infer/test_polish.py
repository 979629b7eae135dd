"""polish_lbfgs: it reaches closed-form modes, keeps a model's own params in the fit, backs off from diverging
solves and never ends worse than it started."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDelta, init_to_value

from pyro_node_uq.data import Split
from pyro_node_uq.distributions import NODEDivergenceError
from pyro_node_uq.infer import polish_lbfgs

Y = torch.tensor([0.3, 1.9, 2.4, 0.8, 1.6], dtype=torch.float64)
SPLIT = Split(t=torch.zeros(1, dtype=torch.float64), x=None, y=Y.reshape(5, 1, 1))


def normal_mean(t, x, y):
    """mu ~ Normal(0, 2), y_i ~ Normal(mu, 0.5): the mode is the posterior mean sum(y) / (n + 0.25 / 4)."""
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 2.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("obs", dist.Normal(mu, 0.5).expand(y.shape[1:]).to_event(2), obs=y)


def learned_scale(t, x, y):
    """mu ~ Normal(0, 10) and a learned scale sigma: at the joint mode sigma^2 is the mean squared residual."""
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 10.0))
    sigma = pyro.param("sigma", torch.tensor(3.0, dtype=torch.float64), constraint=dist.constraints.positive)
    with pyro.plate("data", y.shape[0]):
        pyro.sample("obs", dist.Normal(mu, sigma).expand(y.shape[1:]).to_event(2), obs=y)


def setup(model, start):
    pyro.clear_param_store()
    guide = AutoDelta(model, init_loc_fn=init_to_value(values={"mu": torch.tensor(start, dtype=torch.float64)}))
    guide(*SPLIT.args)
    return guide


def test_reaches_the_conjugate_mode_from_far_away():
    guide = setup(normal_mean, 40.0)
    out = polish_lbfgs(normal_mean, guide, SPLIT, max_iter=100, rtol=1e-12)
    expected = Y.sum() / (5 + 0.25 / 4)
    torch.testing.assert_close(guide.median()["mu"], expected, rtol=1e-8, atol=1e-8)
    assert out.converged and out.reason == "converged" and out.iterations < 100
    assert out.losses[-1] < out.losses[0] and out.evaluations > out.iterations


def test_a_models_own_param_is_polished_with_the_latents():
    guide = setup(learned_scale, -5.0)
    polish_lbfgs(learned_scale, guide, SPLIT, max_iter=200, rtol=1e-14)
    mu, sigma = guide.median()["mu"], pyro.param("sigma").detach()
    # the joint mode: mu = sum(y) / (n + sigma^2 / 100), sigma^2 = mean((y - mu)^2) (started at 3 and -5)
    torch.testing.assert_close(mu, Y.sum() / (5 + sigma ** 2 / 100), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(sigma, (Y - mu).pow(2).mean().sqrt(), rtol=1e-5, atol=1e-8)


def test_max_iter_zero_only_evaluates():
    guide = setup(normal_mean, 40.0)
    out = polish_lbfgs(normal_mean, guide, SPLIT, max_iter=0)
    assert out.iterations == 0 and len(out.losses) == 1 and float(guide.median()["mu"]) == 40.0


def test_the_iteration_budget_is_kept():
    guide = setup(learned_scale, -50.0)
    out = polish_lbfgs(learned_scale, guide, SPLIT, max_iter=3, chunk=2, rtol=1e-14)
    assert out.iterations <= 3 and out.reason == "max_iter" and not out.converged
    assert out.losses == sorted(out.losses, reverse=True)


def test_a_diverging_region_is_backed_off_from():
    """The solve "diverges" for mu > 1 (raises, as a NODE solve does); the mode of the rest, sum(y)/(n + 1/16) =
    1.39, lies beyond it: the polish stays finite, ends below its start, inside the region where the model runs."""
    def model(t, x, y):
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 2.0))
        if float(mu) > 1.0:
            raise NODEDivergenceError("the solve diverged")
        with pyro.plate("data", y.shape[0]):
            pyro.sample("obs", dist.Normal(mu, 0.5).expand(y.shape[1:]).to_event(2), obs=y)

    guide = setup(model, -3.0)
    out = polish_lbfgs(model, guide, SPLIT, max_iter=60)
    mu = float(guide.median()["mu"])
    assert -3.0 < mu <= 1.0 and torch.isfinite(torch.tensor(out.losses)).all()
    assert out.losses[-1] < out.losses[0]


def test_a_non_finite_start_is_refused_by_name():
    def model(t, x, y):
        normal_mean(t, x, y)
        pyro.factor("wall", torch.tensor(float("-inf"), dtype=torch.float64))

    guide = setup(model, 1.0)
    with pytest.raises(FloatingPointError, match="L-BFGS: the loss at the start is (nan|inf)"):
        polish_lbfgs(model, guide, SPLIT)
