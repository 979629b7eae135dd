"""Pyro's MCMC kernel contract for :class:`LangevinKernel`, with HMC and NUTS as controls.

Modelled on Pyro's ``tests/infer/mcmc/test_mcmc_api.py``, ``test_hmc.py`` and ``test_nuts.py``: a model with no
latent, a conjugate model against its closed form, enumerated discrete sites, constrained hierarchical models
(the collapsed beta-binomial with hyperpriors), ArviZ conversion, and clear errors where the ensemble mode
cannot apply.
"""
import math

import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.contrib.conjugate.infer import (
    BetaBinomialPair,
    collapse_conjugate,
    posterior_replay,
)
from pyro.infer import HMC, MCMC, NUTS

from pyro_node_uq.diagnostics import mcmc_to_inference_data
from pyro_node_uq.infer import LangevinKernel

KERNELS = {
    "HMC": lambda model, **kw: HMC(model, num_steps=5, **kw),
    "NUTS": lambda model, **kw: NUTS(model, **kw),
    "Langevin": lambda model, **kw: LangevinKernel(model, **kw),
    "Langevin-ensemble": lambda model, **kw: LangevinKernel(model, num_particles=8, **kw),
}


def _run(kernel, *args, num_samples=200, warmup_steps=200):
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=True)
    mcmc.run(*args)
    return mcmc


def _flat(samples, name, ensemble):
    v = samples[name]
    return v.reshape((-1,) + v.shape[2:]) if ensemble else v


@pytest.mark.parametrize("name", list(KERNELS))
def test_model_without_latents_samples_nothing(name):
    def model(y):
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=y)

    mcmc = _run(KERNELS[name](model), torch.tensor(0.3), num_samples=5, warmup_steps=5)
    assert mcmc.get_samples() == {}


def normal_normal(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("name", list(KERNELS))
def test_conjugate_normal_matches_the_closed_form(name):
    """Posterior N(m, v): the sample mean within 5 Monte Carlo standard errors (an ESS of 50 assumed), the
    variance within 40%."""
    y = torch.tensor([0.8, 1.3, 0.2, 1.9, 1.1])
    v = 1.0 / (1 / 4.0 + len(y))
    m = v * float(y.sum())
    mcmc = _run(KERNELS[name](normal_normal), y, num_samples=400, warmup_steps=300)
    mu = _flat(mcmc.get_samples(), "mu", name.endswith("ensemble"))
    assert abs(float(mu.mean()) - m) < 5 * math.sqrt(v / 50), (float(mu.mean()), m)
    assert abs(float(mu.var()) / v - 1) < 0.4, (float(mu.var()), v)


def mixture(y):
    """A two-component mixture (locations ``loc`` and ``loc + 3``) whose assignments are enumerated out."""
    loc = pyro.sample("loc", dist.Normal(0.0, 5.0))
    with pyro.plate("data", len(y)):
        c = pyro.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.sample("obs", dist.Normal(loc + 3.0 * c, 1.0), obs=y)


@pytest.mark.parametrize("name", ["NUTS", "Langevin"])
def test_enumerated_discrete_sites(name):
    """One chain enumerates discrete sites as HMC/NUTS do: the posterior mean of ``loc`` matches its value by
    quadrature on a grid to 4 posterior standard deviations / sqrt(ESS 30)."""
    pyro.set_rng_seed(1)
    y = torch.cat([torch.randn(20) + 1.0, torch.randn(20) + 4.0])
    grid = torch.linspace(-3, 5, 4001)
    comps = torch.stack([dist.Normal(grid[:, None], 1.0).log_prob(y), dist.Normal(grid[:, None] + 3, 1.0).log_prob(y)])
    log_post = dist.Normal(0.0, 5.0).log_prob(grid) + (torch.logsumexp(comps, 0) + math.log(0.5)).sum(-1)
    w = torch.softmax(log_post, 0)
    mean = float((w * grid).sum())
    sd = float((w * (grid - mean) ** 2).sum().sqrt())
    mcmc = _run(KERNELS[name](mixture, max_plate_nesting=1), y, num_samples=300, warmup_steps=300)
    loc = mcmc.get_samples()["loc"]
    assert abs(float(loc.mean()) - mean) < 4 * sd / math.sqrt(30), (float(loc.mean()), mean, sd)
    assert abs(float(loc.std()) / sd - 1) < 0.5


def test_ensemble_mode_refuses_discrete_sites_clearly():
    kernel = LangevinKernel(mixture, num_particles=8, max_plate_nesting=1)
    with pytest.raises(ValueError, match="num_particles=8.*'c' is discrete.*num_particles=1"):
        _run(kernel, torch.zeros(4), num_samples=2, warmup_steps=2)


def test_ensemble_with_a_bernoulli_latent_does_not_freeze_silently():
    """Before: every chain froze at step size 4e-13 while reporting acceptance 0.48."""
    def model():
        pyro.sample("b", dist.Bernoulli(0.3))
        pyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'b' is discrete"):
        _run(LangevinKernel(model, num_particles=8), num_samples=2, warmup_steps=2)


def _beta_binomial_data():
    pyro.set_rng_seed(0)
    true_probs = torch.tensor([[0.7, 0.4], [0.6, 0.4]])
    total_count = torch.tensor([[1000, 600], [400, 800]])
    data = dist.Binomial(total_count=total_count, probs=true_probs).sample(torch.Size((10,)))
    return true_probs, total_count, data


def _beta_binomial_model(total_count):
    def model(data):
        with pyro.plate("plate_0", data.shape[-1]):
            alpha = pyro.sample("alpha", dist.HalfCauchy(1.0))
            beta = pyro.sample("beta", dist.HalfCauchy(1.0))
            pair = BetaBinomialPair()
            with pyro.plate("plate_1", data.shape[-2]):
                probs = pyro.sample("probs", pair.latent(alpha, beta))
                with pyro.plate("data", data.shape[0]):
                    pyro.sample("binomial", pair.conditional(probs=probs, total_count=total_count), obs=data)
    return model


@pytest.mark.slow  # NUTS without JIT takes minutes here
@pytest.mark.parametrize("name", ["NUTS", "Langevin"])
def test_collapsed_beta_binomial_with_hyperpriors(name):
    """Pyro's test_beta_binomial: posterior means of ``probs`` within 0.05 of the truth.  Before, the first
    warm-up step jumped ~200 units (step size 5.4) to where the density is numerically wrong, and stuck there."""
    true_probs, total_count, data = _beta_binomial_data()
    model = _beta_binomial_model(total_count)
    mcmc = _run(KERNELS[name](collapse_conjugate(model)), data, num_samples=80, warmup_steps=100)
    posterior = posterior_replay(model, mcmc.get_samples(), data, num_samples=80)
    assert (posterior["probs"].mean(0) - true_probs).abs().max() < 0.05
    if name == "Langevin":
        assert mcmc.diagnostics()["acceptance rate"]["chain 0"] > 0.2


def eight_schools(sigma, y=None):
    """Eight schools, non-centred: a latent per school inside the schools' plate."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(sigma)):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        return pyro.sample("obs", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)


SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


@pytest.mark.parametrize("name", list(KERNELS))
def test_arviz_conversion_with_log_likelihood(name):
    """Every kernel's run converts to InferenceData with a pointwise log-likelihood, so ``az.loo`` works;
    ensemble particles are chains."""
    mcmc = _run(KERNELS[name](eight_schools), SCHOOLS_SIGMA, SCHOOLS_Y, num_samples=50, warmup_steps=50)
    idata = mcmc_to_inference_data(mcmc, SCHOOLS_SIGMA, SCHOOLS_Y)
    chains = 8 if name.endswith("ensemble") else 1
    assert idata.posterior["theta_tilde"].shape == (chains, 50, 8)
    assert idata.log_likelihood["obs"].shape == (chains, 50, 8)
    assert idata.sample_stats["diverging"].shape == (chains, 50)
    assert math.isfinite(float(az.loo(idata).elpd_loo))
    if name == "Langevin":  # and the plain Pyro path works too, for one chain
        assert "log_likelihood" in az.from_pyro(mcmc).groups()
