"""The vectorised log joint (:mod:`pyro_node_uq.infer.log_joint`) against hand-computed densities, and its
handling of non-finite values, solver failures, unconditioned and discrete sites."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS

from pyro_node_uq.distributions import NODEDivergenceError
from pyro_node_uq.infer.log_joint import (
    LogJoint,
    UnconditionedSiteError,
    model_plate_nesting,
    value_and_grad,
)

Y = torch.tensor([0.5, -1.0, 2.0])


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Normal(mu, sigma), obs=y)


def by_hand(mu, log_sigma):
    """``log N(mu; 0, 1) + log LogNormal(sigma; 0, 1) + sum log N(y; mu, sigma) + log sigma`` (the Jacobian of
    ``sigma = exp(u)``)."""
    sigma = math.exp(log_sigma)
    lp = -0.5 * mu ** 2 - 0.5 * math.log(2 * math.pi)
    lp += -log_sigma - 0.5 * log_sigma ** 2 - 0.5 * math.log(2 * math.pi)
    lp += sum(-0.5 * ((y - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi) for y in Y.tolist())
    return lp + log_sigma


def test_log_joint_matches_the_hand_computed_density():
    lj = LogJoint.from_model(model, (Y,))
    points = {"mu": torch.tensor([0.0, 1.0, -0.5]), "sigma": torch.tensor([0.0, 0.3, -1.0])}
    out = lj(points)
    expected = [by_hand(m, s) for m, s in zip(points["mu"].tolist(), points["sigma"].tolist())]
    assert out.shape == (3,) and torch.allclose(out, torch.tensor(expected), rtol=1e-12)
    assert lj.vectorized and list(lj.sites) == ["mu", "sigma"]


def test_a_model_that_cannot_vectorise_is_evaluated_per_particle_with_a_warning():
    def scalar_model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu, sigma).expand([len(y)]).to_event(1), obs=y)  # no plate

    lj = LogJoint.from_model(scalar_model, (Y,))
    points = {"mu": torch.tensor([0.0, 1.0]), "sigma": torch.tensor([0.0, 0.3])}
    with pytest.warns(RuntimeWarning, match="cannot be vectorised"):
        out = lj(points)
    assert lj.vectorized is False
    assert torch.allclose(out, torch.tensor([by_hand(0.0, 0.0), by_hand(1.0, 0.3)]), rtol=1e-12)


def test_unconditioned_and_discrete_sites_are_refused_by_name():
    def predictive(n):  # "obs" is a prior draw when no data is given
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", n):
            pyro.sample("obs", dist.Normal(mu, 1.0))

    with pytest.raises(UnconditionedSiteError, match="site 'obs' is neither observed"):
        LogJoint.from_model(predictive, (3,), latent_sites={"mu"})
    lj = LogJoint(predictive, poutine.trace(predictive).get_trace(3), args=(3,))
    del lj.sites["obs"]  # a density over "mu" alone: "obs" is drawn when evaluated
    with pytest.raises(UnconditionedSiteError, match="site 'obs' is neither observed"):
        lj({"mu": torch.zeros(2)})

    def discrete():
        pyro.sample("k", dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="site 'k' is discrete"):
        LogJoint.from_model(discrete)


def test_plate_nesting():
    trace = poutine.trace(model).get_trace(Y)
    assert model_plate_nesting(trace) == 1
    assert model_plate_nesting(poutine.trace(lambda: pyro.sample("x", dist.Normal(0.0, 1.0))).get_trace()) == 0


def test_value_and_grad_by_hand_and_non_finite_members():
    def f(z):  # log density -|z|^2 / 2, not finite where z_0 > 10
        return torch.where(z[:, 0] > 10, torch.full_like(z[:, 0], math.nan), -0.5 * (z ** 2).sum(-1))

    z = torch.tensor([[1.0, 2.0], [20.0, 0.0]])
    value, grad, ok = value_and_grad(f, z)
    assert ok.tolist() == [True, False]
    assert value[0].item() == -2.5 and value[1].item() == -math.inf
    assert torch.equal(grad, torch.tensor([[-1.0, -2.0], [0.0, 0.0]]))
    value, grad, ok = value_and_grad(f, z, with_grad=False)
    assert grad is None and value[0].item() == -2.5


def test_a_solver_failure_marks_every_member_and_other_errors_propagate():
    def diverging(z):
        raise NODEDivergenceError("the solve blew up")

    value, grad, ok = value_and_grad(diverging, torch.zeros(3, 2))
    assert not ok.any() and value.eq(-math.inf).all() and grad.eq(0).all()

    def buggy(z):
        raise KeyError("a bug, not a divergence")

    with pytest.raises(KeyError):
        value_and_grad(buggy, torch.zeros(3, 2))


def test_pyro_nuts_counts_a_node_divergence_as_a_divergence():
    """The error is registered with ``pyro.ops.integrator``: Pyro's own sampler rejects such a proposal and
    counts it, instead of aborting the run."""
    def model():
        x = pyro.sample("x", dist.Normal(0.0, 1.0))
        if x.detach().abs() > 1.0:
            raise NODEDivergenceError("diverged")

    pyro.set_rng_seed(0)
    kernel = NUTS(model, step_size=1.0, adapt_step_size=False, max_tree_depth=3, max_plate_nesting=0)
    mcmc = MCMC(kernel, num_samples=30,
                warmup_steps=0, initial_params={"x": torch.tensor(0.0)}, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples()["x"].abs().max() <= 1.0
    assert len(mcmc.diagnostics()["divergences"]["chain 0"]) > 0
