"""Slow check: AutoLangevin on hierarchical models (latents inside plates) beats AutoNormal on the same SVI budget.

Two models whose latents sit in a group plate: eight schools (non-centred) and a centred hierarchical normal model
(a latent mean per group, the group scale learned: the funnel-shaped posterior where mean-field VI is poor).  Both
guides get the same number of SVI steps: AutoNormal all of them; AutoLangevin half of them as its AutoNormal start
and the other half on its own.  The ELBO is estimated with 10^4 particles (float64, seed 0); AutoLangevin's must be
higher by more than 3 standard errors.
"""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.infer import AutoLangevin

from .conjugate import mean_and_se, per_particle_elbo
from .test_contract import SCHOOLS_SIGMA, SCHOOLS_Y, eight_schools

pytestmark = pytest.mark.slow

GROUPS, PER_GROUP = 6, 4


def centred_groups(y):
    """y[j, i] ~ N(theta_j, 1), theta_j ~ N(mu, tau) inside the groups' plate, mu ~ N(0, 5), tau ~ HalfNormal(2)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfNormal(2.0))
    with pyro.plate("groups", y.shape[0], dim=-2):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        with pyro.plate("obs_per_group", y.shape[1], dim=-1):
            pyro.sample("obs", dist.Normal(theta, 1.0), obs=y)


def _groups_data():
    gen = torch.Generator().manual_seed(0)
    theta = 1.0 + 0.5 * torch.randn(GROUPS, 1, generator=gen)
    return (theta + torch.randn(GROUPS, PER_GROUP, generator=gen),)


CASES = {  # model, data, plate depth
    "eight_schools": (eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y), 1),
    "centred_groups": (centred_groups, _groups_data(), 2),
}
STEPS, LR, PARTICLES = 2000, 0.01, 16


def _fit(model, guide, args, steps):
    svi = SVI(model, guide, pyro.optim.Adam({"lr": LR}), Trace_ELBO(num_particles=PARTICLES, vectorize_particles=True))
    for _ in range(steps):
        svi.step(*args)


@pytest.mark.parametrize("name", sorted(CASES))
def test_langevin_beats_autonormal_on_the_same_budget(name):
    model, args, depth = CASES[name]
    pyro.set_rng_seed(0)
    an = AutoNormal(model, init_scale=0.1)
    _fit(model, an, args, STEPS)
    an_elbo, an_se = mean_and_se(per_particle_elbo(model, an, 10000, *args, max_plate_nesting=depth))
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    start = AutoNormal(model, init_scale=0.1)
    _fit(model, start, args, STEPS // 2)
    guide = AutoLangevin(model, score="hybrid", num_steps=20, exact_weight_init=0.1, init_from=start)
    _fit(model, guide, args, STEPS // 2)
    elbo, se = mean_and_se(per_particle_elbo(model, guide, 10000, *args, max_plate_nesting=depth))
    print(f"{name}: AutoNormal ELBO {an_elbo:.3f} +- {an_se:.3f}, AutoLangevin (hybrid, K=20) {elbo:.3f} +- {se:.3f}")
    assert elbo > an_elbo + 3 * (se ** 2 + an_se ** 2) ** 0.5, (elbo, an_elbo)
