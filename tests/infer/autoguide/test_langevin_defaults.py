"""Slow checks of AutoLangevin at its defaults against exact answers, fitted the way a Pyro user would: plain
``SVI(model, AutoLangevin(model), Adam(0.01), Trace_ELBO(num_particles=16, vectorize_particles=True))``, float64,
3000 steps, seed 0 (``pyro.set_rng_seed(0)`` before building the guide).

* Eight schools (non-centred; :mod:`.eight_schools`): posterior mean and sd of ``tau`` and ``theta[0]`` from 20000
  members within 10% of the exact values (quadrature), and the error of tau's sd falls along the chain length K.
* Bayesian linear regression (d = 10, correlated features; :mod:`.conjugate`): the path-ELBO gap is at most a
  tenth of AutoNormal's.

``benchmarks/langevin_frontier.py`` prints the same numbers for more settings.
"""
import itertools

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.infer import AutoLangevin

from . import eight_schools
from .conjugate import BayesLinReg, mean_and_se, per_particle_elbo

pytestmark = pytest.mark.slow

#: chain lengths along the dial (the default reference, full rank at this size); the default K = 10 is the last
DIAL = (1, 5, 10)


def _fit(model, guide, *args, steps=3000):
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO(num_particles=16, vectorize_particles=True))
    for _ in range(steps):
        svi.step(*args)
    return guide


def _eight_schools(**kwargs):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = _fit(eight_schools.model, AutoLangevin(eight_schools.model, **kwargs))
    with torch.no_grad():
        return eight_schools.moments(guide.sample_ensemble(20000))


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_eight_schools_defaults_match_the_exact_posterior():
    got = _eight_schools()
    errors = {k: got[k] / eight_schools.REFERENCE[k] - 1 for k in got}
    print({k: round(v, 3) for k, v in errors.items()})
    assert all(abs(e) <= 0.10 for e in errors.values()), errors


def test_eight_schools_tau_sd_error_falls_along_the_chain_length():
    ref = eight_schools.REFERENCE["tau_sd"]
    errors = [abs(_eight_schools(num_steps=K)["tau_sd"] / ref - 1) for K in DIAL]
    print(dict(zip(DIAL, errors)))
    assert all(b < a for a, b in itertools.pairwise(errors)), errors


def test_bayesian_linear_regression_gap_against_autonormal():
    model = BayesLinReg(d=10, n=40, rho=0.9)
    gaps = {}
    for name, make in (("autonormal", AutoNormal), ("langevin", AutoLangevin)):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = _fit(model, make(model), model.y)
        elbo, se = mean_and_se(per_particle_elbo(model, guide, 10000, model.y))
        gaps[name] = model.log_evidence - elbo
        assert gaps[name] > -3 * se  # still a lower bound
    print(gaps)
    assert gaps["langevin"] <= 0.1 * gaps["autonormal"], gaps
