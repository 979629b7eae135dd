"""Slow accuracy check of AutoLangevin on a correlated Bayesian linear regression (d = 10, n = 40, float64).

The exact posterior and log evidence are closed form.  ``gap = log p(x) - ELBO`` (10^4 particles) of AutoLangevin,
started at the AutoNormal fit, against the AutoNormal gap.  The posterior is stiff (one data-dominated direction with
variance 0.0026 against 0.11-0.38 in the others), so the learned step size h stays small (~0.03) and the chain
length K sets how far the ensemble moves from the diagonal reference.  Measured (seed 0, 2000 iterations, diagonal
reference): AutoNormal gap 8.90; hybrid K=10: gap 1.41, covariance Frobenius error 0.33; K=20: 0.99, 0.25;
K=40: 0.46-0.57 (ratio 0.05-0.06), 0.12, mean error 0.4-0.6%; learned K=10: gap 1.58 (ratio 0.18), covariance error 0.31.
A low-rank reference of rank 9 reaches gap 0.88 and covariance error 0.15 at K=10 (not tested here).
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
    for name, K in (("autonormal", 0), ("hybrid", 40), ("learned", 10)):
        pyro.clear_param_store()
        an = AutoNormal(model, init_scale=0.1)
        _fit(model, an, 2000, 0.02)
        guide = an
        if name != "autonormal":
            kw = {"exact_weight_init": 1.0} if name == "hybrid" else {}
            guide = AutoLangevin(model, score=name, num_steps=K, init_from=an, **kw)
            _fit(model, guide, 2000, 0.01)
        elbo, se = mean_and_se(per_particle_elbo(model, guide, 10000, model.y))
        ens = guide.sample_ensemble(20000, model.y)["w"] if name != "autonormal" else None
        out[name] = {"gap": model.log_evidence - elbo, "se": se, "ens": ens}
        print(f"{name}: gap {out[name]['gap']:.3f} +- {se:.3f}")
    return model, out


def test_gaps_against_autonormal(fitted):
    _model, out = fitted
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
    assert cov_err <= 0.15
