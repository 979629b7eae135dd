"""ArviZ conversion of any Pyro model: the pointwise log-likelihood against ``az.from_pyro`` and a closed form,
the model's own masks, guides on plain models, and the checks on the draws."""
import math

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.diagnostics import (
    mcmc_to_inference_data,
    model_inference_data,
    to_inference_data,
)


def regression(x, y=None):
    a = pyro.sample("a", dist.Normal(0.0, 2.0))
    s = pyro.sample("s", dist.HalfNormal(1.0))
    pyro.deterministic("slope_squared", a ** 2)
    with pyro.plate("data", len(x)):
        return pyro.sample("y", dist.Normal(a * x, s), obs=y)


def _data(n=20):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    return x, 0.7 * x + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)


def _normal_loglik(a, s, x, y):
    """log N(y | a x, s) by hand, draws (C, D) against points (n,): (C, D, n)."""
    a, s = a[..., None], s[..., None]
    return -0.5 * ((y - a * x) / s) ** 2 - np.log(s) - 0.5 * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def nuts_run():
    x, y = _data()
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(regression), num_samples=60, warmup_steps=60, num_chains=2, disable_progbar=True,
                mp_context=None)
    mcmc.run(x, y)
    return mcmc, x, y


def test_mcmc_loo_equals_arviz_from_pyro(nuts_run):
    """``az.loo`` of the converted NUTS run equals ``az.loo(az.from_pyro(mcmc))`` to 1e-6 (it was elpd 0.00:
    the log-likelihood was read from a trace under Pyro's mask(False))."""
    mcmc, x, y = nuts_run
    ours = az.loo(mcmc_to_inference_data(mcmc, x, y), pointwise=True)
    # az.from_pyro also scores the deterministic site as an observation: name the real one
    reference = az.loo(az.from_pyro(mcmc), pointwise=True, var_name="y")
    assert ours.elpd_loo < -1.0  # not the zeros of a masked trace
    assert abs(ours.elpd_loo - reference.elpd_loo) < 1e-6
    assert abs(ours.p_loo - reference.p_loo) < 1e-6
    np.testing.assert_allclose(ours.loo_i.values, reference.loo_i.values, atol=1e-6)


def test_mcmc_log_likelihood_is_the_normal_density_by_hand(nuts_run):
    mcmc, x, y = nuts_run
    idata = mcmc_to_inference_data(mcmc, x, y)
    post = idata.posterior
    expected = _normal_loglik(post["a"].values, post["s"].values, x.numpy(), y.numpy())
    np.testing.assert_allclose(idata.log_likelihood["y"].values, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(idata.posterior["slope_squared"].values, post["a"].values ** 2, rtol=1e-12)
    assert idata.posterior_predictive["y"].shape == (2, 60, 20)
    np.testing.assert_array_equal(idata.observed_data["y"].values, y.numpy())
    assert idata.sample_stats["diverging"].shape == (2, 60)


def test_guide_on_a_plain_pyro_model():
    """``to_inference_data(guide, model, *args)``: posterior, posterior_predictive and log_likelihood of an SVI
    guide on a model that is not NODE-shaped; the log-likelihood is that of each posterior draw."""
    x, y = _data()
    pyro.clear_param_store()
    guide = AutoNormal(regression)
    svi = pyro.infer.SVI(regression, guide, pyro.optim.Adam({"lr": 0.05}), pyro.infer.Trace_ELBO())
    pyro.set_rng_seed(0)
    for _ in range(300):
        svi.step(x, y)
    idata = to_inference_data(guide, regression, x, y, num_samples=200, num_chains=4)
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    post = idata.posterior
    assert post["a"].shape == (4, 50)
    least_squares = float((x * y).sum() / (x * x).sum())  # the posterior mean up to the weak N(0, 2) prior
    assert abs(float(post["a"].mean()) - least_squares) < 0.05
    expected = _normal_loglik(post["a"].values, post["s"].values, x.numpy(), y.numpy())
    np.testing.assert_allclose(idata.log_likelihood["y"].values, expected, rtol=1e-8, atol=1e-8)
    assert math.isfinite(float(az.loo(idata).elpd_loo))
    pred = idata.posterior_predictive["y"].values
    assert pred.shape == (4, 50, 20) and abs(pred.std() - y.std().item()) < 0.5


def test_the_models_own_mask_zeroes_the_masked_entries():
    x, y = _data(6)
    keep = torch.tensor([True, False, True, True, False, True])

    def masked(x, y=None):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)), poutine.mask(mask=keep):
            pyro.sample("y", dist.Normal(a * x, 0.5), obs=y)

    draws = {"a": torch.randn(8, dtype=torch.float64)}
    ll = model_inference_data(draws, masked, x, y, num_chains=2).log_likelihood["y"].values
    expected = _normal_loglik(draws["a"].numpy().reshape(2, 4), np.full((2, 4), 0.5), x.numpy(), y.numpy())
    np.testing.assert_allclose(ll[..., keep.numpy()], expected[..., keep.numpy()], rtol=1e-10)
    assert (ll[..., ~keep.numpy()] == 0).all()


def test_event_dims_are_summed_per_plate_entry():
    """A site with an event shape gives one value per plate entry (as ``az.from_pyro``)."""
    y = torch.zeros(3, 2, dtype=torch.float64)

    def model(y):
        m = pyro.sample("m", dist.Normal(0.0, 1.0))
        with pyro.plate("rows", 3):
            pyro.sample("y", dist.MultivariateNormal(m[..., None] * torch.ones(2), torch.eye(2)), obs=y)

    m = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ll = model_inference_data({"m": m}, model, y, num_chains=1).log_likelihood["y"].values
    by_hand = 2 * (-0.5 * m.numpy() ** 2 - 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(ll, np.broadcast_to(by_hand[None, :, None], (1, 2, 3)), rtol=1e-12)


def test_draws_that_do_not_match_the_model_are_refused():
    x, y = _data(4)
    with pytest.raises(ValueError, match=r"no draws of the model's latent sites \['s'\]"):
        model_inference_data({"a": torch.zeros(4)}, regression, x, y)
    with pytest.raises(ValueError, match="'b'.* not sample sites"):
        model_inference_data({"a": torch.zeros(4), "s": torch.ones(4), "b": torch.zeros(4)}, regression, x, y)
    with pytest.raises(TypeError, match="posterior: expected a guide"):
        model_inference_data(3, regression, x, y)
    with pytest.raises(ValueError, match="no observed sample site"):
        model_inference_data({"a": torch.zeros(4), "s": torch.ones(4)}, regression, x)


def test_guide_with_latents_inside_a_plate():
    """Per-school latents (inside the data plate) of an ``AutoMultivariateNormal``: the draws line up with the
    plate and the log-likelihood is that of each draw."""
    y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
    sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)

    def schools(sigma, y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("schools", len(sigma)):
            theta = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
            return pyro.sample("obs", dist.Normal(mu + tau * theta, sigma), obs=y)

    guide = pyro.infer.autoguide.AutoMultivariateNormal(schools)
    guide(sigma, y)
    idata = to_inference_data(guide, schools, sigma, y, num_samples=40, num_chains=2)
    post = idata.posterior
    assert post["theta_tilde"].shape == (2, 20, 8) and idata.posterior_predictive["obs"].shape == (2, 20, 8)
    mean = post["mu"].values[..., None] + post["tau"].values[..., None] * post["theta_tilde"].values
    expected = -0.5 * ((y.numpy() - mean) / sigma.numpy()) ** 2 - np.log(sigma.numpy()) - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(idata.log_likelihood["obs"].values, expected, rtol=1e-10, atol=1e-10)
