"""Conjugate Gaussian models with closed-form posteriors and evidence, shared by the guide and kernel tests."""
import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine


class BayesLinReg:
    """y = X w + noise, w ~ N(0, prior_scale^2 I), noise ~ N(0, sigma^2); features correlated with ``rho``."""

    def __init__(self, d=10, n=40, rho=0.9, sigma=1.0, prior_scale=1.0, seed=0):
        gen = torch.Generator().manual_seed(seed)
        cov = rho * torch.ones(d, d) + (1 - rho) * torch.eye(d)
        self.X = torch.randn(n, d, generator=gen) @ torch.linalg.cholesky(cov).T
        self.w_true = torch.randn(d, generator=gen)
        self.sigma, self.prior_scale = sigma, prior_scale
        self.y = self.X @ self.w_true + sigma * torch.randn(n, generator=gen)
        precision = torch.eye(d) / prior_scale**2 + self.X.T @ self.X / sigma**2
        self.post_cov = torch.linalg.inv(precision)
        self.post_mean = self.post_cov @ self.X.T @ self.y / sigma**2
        marg = dist.MultivariateNormal(torch.zeros(n), sigma**2 * torch.eye(n) + prior_scale**2 * self.X @ self.X.T)
        self.log_evidence = float(marg.log_prob(self.y))

    def __call__(self, y=None):
        d = self.X.shape[1]
        w = pyro.sample("w", dist.Normal(torch.zeros(d), self.prior_scale).to_event(1))
        with pyro.plate("data", self.X.shape[0], dim=-1):
            # w has batch dims (..., 1) whose last aligns with the data plate: contract over the event dim
            return pyro.sample("obs", dist.Normal((w * self.X).sum(-1), self.sigma), obs=y)


def per_particle_elbo(model, guide, num_particles, *args, max_plate_nesting=1):
    """Per-particle ``log p(x, z) - log q(z)`` for ``num_particles`` independent guide draws (vectorised)."""
    with pyro.plate("_particles", num_particles, dim=-max_plate_nesting - 1), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    total = torch.zeros(num_particles)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":
                lp = site["log_prob"]
                lp = lp.reshape(lp.shape[:1] + (-1,)).sum(-1) if lp.dim() else lp.expand(num_particles)
                total = total + sign * lp.expand(num_particles)
    return total


def mean_and_se(values):
    values = values.detach()
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))
