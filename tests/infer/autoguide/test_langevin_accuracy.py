"""Slow accuracy check of AutoLangevin on a correlated Bayesian linear regression (d = 10, n = 40, float64).

The exact posterior and log evidence are closed form.  ``gap = log p(x) - ELBO`` (10^4 particles) of AutoLangevin,
started at the AutoNormal fit, against the AutoNormal gap.  Measured (seed 0, 2000 iterations): AutoNormal gap
8.90; hybrid gap 1.3-1.5 (ratio 0.15-0.17), learned 1.57 (ratio 0.18); hybrid posterior mean error 0.2-0.6%,
covariance Frobenius error 24-35% (the issue's 15% target is NOT met: the path-KL bound's slack leaves the
ensemble under-dispersed in the prior-dominated directions; see the closing note of the AutoLangevin issue).
"""
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.infer import AutoLangevin

from .conjugate import BayesLinReg, mean_and_se, per_particle_elbo

pytestmark = pytest.mark.slow


def _fit(model, guide, steps, lr):
    pyro.set_rng_seed(0)
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)})
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=32, vectorize_particles=True))
    for _ in range(steps):
        svi.step(model.y)


@pytest.fixture(scope="module")
def fitted():
    torch.set_default_dtype(torch.float64)
    model = BayesLinReg(d=10, n=40, rho=0.9)
    out = {}
    for name in ("autonormal", "hybrid", "learned"):
        pyro.clear_param_store()
        an = AutoNormal(model, init_scale=0.1)
        _fit(model, an, 2000, 0.02)
        guide = an
        if name != "autonormal":
            kw = {"exact_weight_init": 1.0} if name == "hybrid" else {}
            guide = AutoLangevin(model, score=name, num_steps=10, init_from=an, **kw)
            _fit(model, guide, 2000, 0.01)
        elbo, se = mean_and_se(per_particle_elbo(model, guide, 10000, model.y))
        ens = guide.sample_ensemble(20000, model.y)["w"] if name != "autonormal" else None
        out[name] = dict(gap=model.log_evidence - elbo, se=se, ens=ens)
        print(f"{name}: gap {out[name]['gap']:.3f} +- {se:.3f}")
    return model, out


def test_gaps_against_autonormal(fitted):
    model, out = fitted
    an = out["autonormal"]["gap"]
    assert out["hybrid"]["gap"] <= 0.2 * an, (out["hybrid"]["gap"], an)
    assert out["learned"]["gap"] <= 0.5 * an, (out["learned"]["gap"], an)
    for res in out.values():
        assert res["gap"] > -3 * res["se"]  # still a lower bound


def test_hybrid_posterior_moments(fitted):
    model, out = fitted
    ens = out["hybrid"]["ens"]
    mean_err = float((ens.mean(0) - model.post_mean).norm() / model.post_mean.norm())
    cov_err = float((torch.cov(ens.T) - model.post_cov).norm() / model.post_cov.norm())
    print(f"hybrid: mean rel. error {mean_err:.4f}, covariance rel. Frobenius error {cov_err:.3f}")
    assert mean_err <= 0.02
    assert cov_err <= 0.4  # target 0.15 not reached; this guards against regressions from the measured 0.24-0.35
