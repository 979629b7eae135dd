"""AutoLayerwise: chosen sites stochastic, point sites re-optimised (closed-form optimum on a conjugate model),
the exact drift sees the current point values, Pyro's guide interface (median, quantiles, Predictive, pickle,
state_dict), the runner and the ArviZ converter, and clear errors."""
import io
import math
import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoMultivariateNormal,
    AutoNormal,
    init_to_value,
)

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.infer import AutoLangevin, AutoLayerwise, CountingModel
from pyro_node_uq.methods import guide_samples, run_layerwise, run_map


class OffsetRegression:
    """``y = a mu + X w + noise``: ``mu ~ N(0, s^2)`` (the point site), ``w ~ N(0, I_d)`` (the stochastic site).

    Jointly Gaussian, so the optimum of ``q(w) delta(mu)`` over an exact-family ``q`` is ``mu* = argmax_mu
    log p(y, mu)`` (the mean of ``p(mu | y)``, in closed form) and ``q = p(w | y, mu*)``.
    """

    def __init__(self, n=30, d=3, sigma=0.5, s=2.0, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.X, self.a = torch.randn(n, d, generator=gen), 1.0 + torch.rand(n, generator=gen)
        self.sigma, self.s = sigma, s
        self.y = 0.7 * self.a + self.X @ torch.randn(d, generator=gen) + sigma * torch.randn(n, generator=gen)
        C_inv = torch.linalg.inv(sigma**2 * torch.eye(n) + self.X @ self.X.T)
        self.mu_star = float(self.a @ C_inv @ self.y / (1 / s**2 + self.a @ C_inv @ self.a))
        self.mu_sd = float((1 / s**2 + self.a @ C_inv @ self.a) ** -0.5)
        prec = torch.eye(d) + self.X.T @ self.X / sigma**2
        self.w_cov = torch.linalg.inv(prec)

    def w_mean(self, mu):
        """Mean of ``p(w | y, mu)`` (its covariance ``w_cov`` does not depend on ``mu``)."""
        return self.w_cov @ self.X.T @ (self.y - self.a * mu) / self.sigma**2

    def __call__(self, y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, self.s))
        w = pyro.sample("w", dist.Normal(torch.zeros(self.X.shape[1]), 1.0).to_event(1))
        with pyro.plate("data", self.X.shape[0], dim=-1):
            mean = mu * self.a + (w * self.X).sum(-1)  # batched: mu (P, 1), w (P, 1, d) -> (P, n)
            return pyro.sample("obs", dist.Normal(mean, self.sigma), obs=y)


def log_joint(model, values, *args):
    trace = poutine.trace(poutine.condition(model, values)).get_trace(*args)
    return trace.log_prob_sum()


@pytest.fixture(scope="module")
def problem():
    return load_problem("chemical", num_train=2, num_test=2, num_times=9)


@pytest.fixture(scope="module")
def model(problem):
    return problem.default_model(R_hidden=(4,))  # R.0: (4, 4) + 4, R.1: (3, 4) + 3


def fit(model, guide, split, steps, particles=4, lr=0.02):
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}),
              Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1))
    return [svi.step(*split.args, **split.kwargs) for _ in range(steps)]


@pytest.mark.parametrize("subset,guide_cls,kw", [
    ("last_layer", AutoLangevin, {"num_steps": 2}),
    ("first_layer", AutoNormal, {"init_scale": 0.05}),
])
def test_only_chosen_sites_vary(problem, model, subset, guide_cls, kw):
    guide = AutoLayerwise(model, subset=subset, guide=guide_cls, **kw)
    fit(model, guide, problem.train, 3)
    assert guide.stochastic_sites == model.layer_sites(subset)
    assert set(guide.point_sites) == {"R.0.weight", "R.0.bias", "R.1.weight", "R.1.bias"} - set(guide.stochastic_sites)
    draws = guide_samples(guide, 6, problem.train.args, problem.train.kwargs)
    assert set(draws) == set(guide.point_sites) | set(guide.stochastic_sites)
    for name in guide.stochastic_sites:
        assert draws[name].std(0).min() > 1e-4, name
    points = guide.point_values()
    for name in guide.point_sites:
        assert torch.equal(draws[name], points[name].expand_as(draws[name])), name


def test_network_name_selects_its_sites(problem, model):
    guide = AutoLayerwise(model, stochastic="R", guide=AutoNormal)
    with pytest.raises(ValueError, match="selects every latent site"):
        guide(*problem.train.args)
    model_z = problem.default_model(R_hidden=(4,), Z_hidden=())
    guide = AutoLayerwise(model_z, stochastic=["Z", "R.1.b*"], guide=AutoNormal)
    guide(*problem.train.args)
    assert guide.stochastic_sites == ["R.1.bias", "Z.0.weight", "Z.0.bias"]


def test_point_sites_reoptimised_to_closed_form_optimum():
    m = OffsetRegression()
    pyro.set_rng_seed(1)
    guide = AutoLayerwise(m, stochastic="w", guide=AutoMultivariateNormal,
                          init_loc_fn=init_to_value(values={"mu": torch.tensor(4.0), "w": torch.zeros(3)}))
    steps = 800
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.005 ** (1 / steps)})
    svi = SVI(m, guide, optim, Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1))
    guide(m.y)
    assert float(guide.point_values()["mu"]) == 4.0
    for _ in range(steps):
        svi.step(m.y)
    mu = float(guide.point_values()["mu"])
    assert abs(4.0 - m.mu_star) > 10 * m.mu_sd  # the start is far from mu*: the point site must move there
    assert abs(mu - m.mu_star) < 0.15 * m.mu_sd, (mu, m.mu_star, m.mu_sd)
    q = guide.stochastic_guide
    assert torch.allclose(q.loc, m.w_mean(mu), atol=0.1 * float(m.w_cov.diag().min().sqrt()))
    cov = q.get_posterior().covariance_matrix  # within 5% of the smallest variance, entrywise
    assert torch.allclose(cov, m.w_cov, rtol=0.1, atol=0.05 * float(m.w_cov.diag().min())), (cov, m.w_cov)


@pytest.mark.parametrize("score", ["exact", "hybrid"])
def test_exact_drift_sees_current_point_values(score):
    m = OffsetRegression()
    guide = AutoLayerwise(m, stochastic="w", guide=AutoLangevin, score=score, num_steps=2)
    counted = CountingModel(m)
    guide._model = (counted,)
    fit(counted, guide, type("S", (), {"args": (m.y,), "kwargs": {}})(), 2, particles=3)
    with torch.no_grad():
        guide.point_guide.mu = torch.tensor(1.3)  # a value no prior draw reproduces
    inner = guide.stochastic_guide
    z = torch.randn(5, 1, 3)
    grad, ok = inner.exact_score(z)
    assert ok.all()
    expected = []
    for zi in z:
        leaf = zi[0].clone().requires_grad_()
        (g,) = torch.autograd.grad(log_joint(m, {"mu": torch.tensor(1.3), "w": leaf}, m.y), leaf)
        expected.append(g)
    assert torch.allclose(grad[:, 0], torch.stack(expected), rtol=1e-10, atol=1e-10)
    leaf = z[0, 0].clone().requires_grad_()
    (wrong,) = torch.autograd.grad(log_joint(m, {"mu": torch.tensor(0.0), "w": leaf}, m.y), leaf)
    assert not torch.allclose(grad[0, 0], wrong, atol=1e-3)  # the check can fail: the point value matters
    # every drift step is counted as a batch of data-model evaluations: one model pass and K drift passes
    before = counted.count
    fit(counted, guide, type("S", (), {"args": (m.y,), "kwargs": {}})(), 1, particles=3)
    assert counted.count - before == 3 * (1 + 2)


def test_median_quantiles_predictive(problem, model):
    guide = AutoLayerwise(model, subset="last_layer", guide=AutoLangevin, num_steps=2, num_quantile_samples=50)
    fit(model, guide, problem.train, 3)
    points = guide.point_values()
    med = guide.median(*problem.train.args)
    qs = guide.quantiles([0.1, 0.5, 0.9], *problem.train.args)
    for name in guide.point_sites:
        assert torch.equal(med[name], points[name])
        assert torch.equal(qs[name], points[name].expand((3,) + points[name].shape))
    for name in guide.stochastic_sites:
        assert med[name].shape == points["R.0.weight"].new_empty(model.weight_shapes()[name]).shape
        assert (qs[name][0] < qs[name][2]).all()
    out = Predictive(model, guide=guide, num_samples=4, parallel=True, return_sites=["obs", "y_mean"])(
        problem.test.t, problem.test.x, None, num_trajectories=len(problem.test))
    assert out["y_mean"].shape[0] == 4 and out["y_mean"].shape[-3:] == (2, 9, 2)
    assert out["y_mean"].std(0).max() > 0  # the last layer varies


def test_pickle_and_state_dict(problem, model):
    args = problem.train.args
    make = lambda: AutoLayerwise(model, subset="first_layer", guide=AutoLangevin, score="hybrid",
                                 num_steps=2, num_quantile_samples=20)
    guide = make()
    fit(model, guide, problem.train, 3)

    def median(g):
        pyro.set_rng_seed(3)
        return g.median(*args)

    med = median(guide)
    buf = io.BytesIO()
    torch.save(guide, buf)
    assert all(torch.equal(med[k], v) for k, v in median(guide).items())  # the original keeps its model
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    with pytest.raises(RuntimeError, match="unpickled without its model"):
        median(loaded)  # the hybrid drift evaluates the model, which Pyro does not pickle
    loaded._model = (model,)
    assert all(torch.equal(med[k], v) for k, v in median(loaded).items())
    assert pickle.loads(pickle.dumps(guide)).point_sites == guide.point_sites
    state = guide.state_dict()
    pyro.clear_param_store()
    fresh = make()
    fresh(*args)
    assert not torch.equal(median(fresh)["R.1.weight"], med["R.1.weight"])
    fresh.load_state_dict(state)
    assert all(torch.equal(med[k], v) for k, v in median(fresh).items())


def test_init_from_map(problem, model):
    res = run_map(model, problem.train, num_steps=5, progress_bar=False)
    values = {k: v.detach() for k, v in res.guide.median().items()}
    guide = AutoLayerwise(model, subset="last_layer", guide=AutoNormal, init_from=res)
    guide(*problem.train.args)
    assert all(torch.equal(guide.point_values()[k], values[k]) for k in guide.point_sites)
    assert torch.allclose(guide.stochastic_guide.median()["R.1.weight"], values["R.1.weight"])
    fit(model, guide, problem.train, 3)  # re-optimised, not frozen
    assert not torch.equal(guide.point_values()["R.0.weight"], values["R.0.weight"])


def test_runner_counts_and_arviz(problem, model):
    res = run_layerwise(model, problem.train, subset="last_layer", guide_kwargs={"num_steps": 2, "score": "exact"},
                        num_steps=3, num_particles=2, map_steps=4, elbo_particles=8, progress_bar=False)
    assert res.name == "layerwise_last_layer" and res.stochastic_dim == 3 * 4 + 3
    # MAP: 1 + 4 and its L-BFGS polish (map_steps=4: 1 iteration), as run_map alone counts them; layer-wise:
    # prototype traces of the list, AutoDelta, the conditioned model (x2 in AutoLangevin), then per step
    # 2 particles x (1 model + 2 drift) evaluations
    start = run_map(model, problem.train, num_steps=4, progress_bar=False)
    assert start.num_model_evals > 1 + 4
    assert res.num_model_evals == start.num_model_evals + 4 + 3 * 2 * 3
    assert math.isfinite(res.elbo)
    idata = to_inference_data(res, problem.test, num_samples=8, num_chains=2)
    post = idata.posterior
    assert float(post["R.0.weight"].std(("chain", "draw")).max()) == 0.0
    assert float(post["R.1.weight"].std(("chain", "draw")).min()) > 0.0
    assert idata.log_likelihood["obs"].shape[:2] == (2, 4)


def test_errors(problem, model):
    args = problem.train.args
    with pytest.raises(ValueError, match="pattern 'Q.*' matches no latent site"):
        AutoLayerwise(model, stochastic="Q.*")(*args)
    with pytest.raises(ValueError, match="exactly one of"):
        AutoLayerwise(model)
    with pytest.raises(ValueError, match="exactly one of"):
        AutoLayerwise(model, stochastic="R.0.*", subset="last_layer")
    with pytest.raises(ValueError, match="subset must be one of"):
        AutoLayerwise(model, subset="middle")
    with pytest.raises(ValueError, match="needs a model with layer_sites"):
        AutoLayerwise(OffsetRegression(), subset="last_layer")
    with pytest.raises(TypeError, match="AutoGuide class"):
        AutoLayerwise(model, subset="last_layer", guide=AutoNormal(model))
    with pytest.raises(TypeError, match="init_from"):
        AutoLayerwise(model, subset="last_layer", init_from=AutoDelta(model))  # not fitted

    def discrete():
        pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("k", dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="site 'k' is discrete"):
        AutoLayerwise(discrete, stochastic="mu")()
