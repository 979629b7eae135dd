"""Eight schools (non-centred) with an exact posterior reference by quadrature, shared by the guide tests and
``benchmarks/langevin_frontier.py``.

Data: the eight-schools SAT coaching study as in Pyro's ``examples/eight_schools``.  Priors as in posteriordb's
``eight_schools_noncentered``: ``mu ~ Normal(0, 5)``, ``tau ~ HalfCauchy(5)``, ``eta_j ~ Normal(0, 1)``,
``theta_j = mu + tau eta_j``, ``y_j ~ Normal(theta_j, sigma_j)``.

Integrating ``theta`` out, ``p(mu, tau | y)`` is known up to a constant on a 2-D grid, and ``theta_j`` given
``(mu, tau, y)`` is normal, so posterior moments of ``tau`` and ``theta_j`` follow by quadrature to many digits.
"""
import math

import pyro
import pyro.distributions as dist
import torch

Y = (28., 8., -3., 7., -1., 1., 18., 12.)
SIGMA = (15., 10., 16., 11., 9., 11., 10., 18.)

#: ``exact_moments()`` (grid of 3001 mu x 6001 log tau over [-40, 50] x [-25, 7]; float64), rounded.  A NUTS run
#: with the same priors (4 chains x 1000 draws) gave tau 3.64 / 3.25 (mean / sd), within its Monte Carlo error.
REFERENCE = {"tau_mean": 3.598, "tau_sd": 3.220, "theta0_mean": 6.212, "theta0_sd": 5.593}


def model():
    y, sigma = torch.tensor(Y), torch.tensor(SIGMA)
    mu = pyro.sample("mu", dist.Normal(0., 5.))
    tau = pyro.sample("tau", dist.HalfCauchy(5.))
    with pyro.plate("school", len(Y)):
        eta = pyro.sample("eta", dist.Normal(0., 1.))
        pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def exact_moments(num_mu=3001, num_log_tau=6001):
    """Posterior mean and sd of ``tau`` and ``theta_0`` by quadrature over ``(mu, log tau)`` (float64)."""
    y, s = torch.tensor(Y, dtype=torch.float64), torch.tensor(SIGMA, dtype=torch.float64)
    mu = torch.linspace(-40, 50, num_mu, dtype=torch.float64)[:, None]
    log_tau = torch.linspace(-25, 7, num_log_tau, dtype=torch.float64)[None, :]
    tau = log_tau.exp()
    log_post = -0.5 * mu ** 2 / 25 - torch.log1p((tau / 5) ** 2) + log_tau  # priors and the Jacobian of log tau
    for yj, sj in zip(y, s):
        var = sj ** 2 + tau ** 2
        log_post = log_post - 0.5 * (yj - mu) ** 2 / var - 0.5 * torch.log(var)
    w = (log_post - log_post.max()).exp()
    w = w / w.sum()
    prec = 1 / tau ** 2 + 1 / s[0] ** 2  # theta_0 | mu, tau, y
    m0 = (mu / tau ** 2 + y[0] / s[0] ** 2) / prec
    tau_mean, th_mean = float((w * tau).sum()), float((w * m0).sum())
    return {"tau_mean": tau_mean, "tau_sd": math.sqrt(float((w * tau ** 2).sum()) - tau_mean ** 2),
            "theta0_mean": th_mean, "theta0_sd": math.sqrt(float((w * (1 / prec + m0 ** 2)).sum()) - th_mean ** 2)}


def moments(samples):
    """Mean and sd of ``tau`` and ``theta_0`` from posterior draws ``{"mu", "tau", "eta"}`` (leading sample dim)."""
    n = samples["tau"].shape[0]
    tau = samples["tau"].reshape(n)
    theta0 = samples["mu"].reshape(n) + tau * samples["eta"].reshape(n, -1)[:, 0]
    return {"tau_mean": float(tau.mean()), "tau_sd": float(tau.std()),
            "theta0_mean": float(theta0.mean()), "theta0_sd": float(theta0.std())}
