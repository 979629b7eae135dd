"""SDE-BNN: the in-solve path KL against an independent Girsanov estimate, prior = posterior at g = 0, STL,
the Pyro model/guide contract and bad input.  Statistical checks run in float64 with fixed seeds."""
import math
import pickle

import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO

from pyro_node_uq.data import StaticSplit
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.distributions import SDESolver, WeightPathFeatures, solve_weight_path
from pyro_node_uq.methods import run_sdebnn
from pyro_node_uq.models import SDEBNN, BottleneckDrift

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed_and_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs cost more than they save on a shared machine
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    torch.set_num_threads(threads)


def _random_drift(D, seed=0):
    drift = BottleneckDrift(D, bottleneck=6, generator=torch.Generator().manual_seed(seed)).to(F64)
    with torch.no_grad():
        drift.params[2].normal_(0, 0.4, generator=torch.Generator().manual_seed(seed + 1))  # g != 0
    return drift


def test_kl_matches_independent_girsanov_monte_carlo():
    """Mean in-solve KL (plain and STL) = Monte Carlo of log q/p from Gaussian Euler transition densities,
    simulated by a separate loop (same step grid, so both estimate the same discretised KL)."""
    D, P, dt, sigma = 3, 4000, 0.05, 0.5
    w0 = torch.tensor([0.5, -0.3, 0.1], dtype=F64)
    drift = _random_drift(D)
    with torch.no_grad():
        kl_plain = solve_weight_path(w0, sigma, P, drift=drift, solver={"dt": dt})[2]
        kl_stl = solve_weight_path(w0, sigma, P, drift=drift, solver={"dt": dt}, estimator="stl")[2]
        gen = torch.Generator().manual_seed(123)
        w, log_ratio = w0.expand(P, D), torch.zeros(P, dtype=F64)
        for k in range(round(1 / dt)):
            t = torch.tensor(k * dt, dtype=F64)
            q_loc = w + (-w + drift(t, w)) * dt
            p_loc = w - w * dt
            w_next = q_loc + sigma * math.sqrt(dt) * torch.randn(P, D, generator=gen, dtype=F64)
            step = torch.distributions.Normal(q_loc, sigma * math.sqrt(dt)).log_prob(w_next)
            step = step - torch.distributions.Normal(p_loc, sigma * math.sqrt(dt)).log_prob(w_next)
            log_ratio, w = log_ratio + step.sum(-1), w_next
    reference = log_ratio.mean()
    assert reference > 0.05  # a non-trivial KL
    for estimate in (kl_plain, kl_stl):
        se = (estimate.var() / P + log_ratio.var() / P).sqrt()
        assert abs(estimate.mean() - reference) < 4 * se, (float(estimate.mean()), float(reference), float(se))
    # the plain estimator drops the zero-mean dB integral, so it varies less than the full log-ratio
    assert kl_plain.var() < kl_stl.var()


def test_kl_of_constant_drift_is_closed_form():
    """g = c constant: KL(Q || P) = 0.5 ||c / sigma||^2 exactly, on every path."""
    c, sigma = torch.tensor([0.3, -0.6], dtype=F64), torch.tensor([0.5, 0.2], dtype=F64)
    _, _, kl = solve_weight_path(torch.zeros(2, dtype=F64), sigma, 7, drift=lambda t, w, detach=False: c.expand_as(w),
                                 solver={"dt": 0.1})
    torch.testing.assert_close(kl, torch.full((7,), 0.5 * float(((c / sigma) ** 2).sum()), dtype=F64))


def test_zero_drift_posterior_is_the_ou_prior():
    """At initialisation g_phi = 0: the guide's log-density is exactly 0 and its terminal weights have the OU
    moments mean w0 e^{-1}, variance sigma^2 (1 - e^{-2}) / 2 (tolerance: 4 standard errors + Euler bias)."""
    sigma, P = 0.4, 3000
    net = SDEBNN(1, 1, width=(4,), sigma=sigma, solver={"dt": 0.02}).to(F64)
    x = torch.linspace(-1, 1, 5, dtype=F64)[:, None]
    posterior = net.path_law(x, posterior=True).expand((P,))
    prior = net.path_law(x, posterior=False).expand((P,))
    with torch.no_grad():
        h_q, h_p = posterior.rsample(), prior.rsample()
    assert (posterior.log_prob(h_q) == 0).all() and (prior.log_prob(h_p) == 0).all()
    w0 = net.w0.detach()
    mean, var = w0 * math.exp(-1), sigma ** 2 * (1 - math.exp(-2)) / 2
    for w1 in (posterior.weights, prior.weights):
        assert (w1.mean(0) - mean).abs().max() < 4 * math.sqrt(var / P) + 0.02 * w0.abs().max()
        assert ((w1.var(0) / var) - 1).abs().max() < 0.12  # chi2 spread of 3000 draws over D=13 weights + bias
    # and the features agree in distribution (two-sample check of the first two moments)
    se = ((h_q.var(0) + h_p.var(0)) / P).sqrt()
    assert ((h_q.mean(0) - h_p.mean(0)).abs() < 4.5 * se + 1e-9).all()


def _h_transform_elbo(theta, estimator, P, sigma=0.8, s=0.3, y=1.0, w0=0.2, dt=0.02):
    """Scalar OU prior, y ~ N(w_1, s^2).  The exact posterior path law is the Doob h-transform with drift
    g*(t, w) = sigma^2 a (y - a w) / v, a = e^{-(1-t)}, v = s^2 + sigma^2 (1 - a^2) / 2: theta = (1, 1) below."""
    def drift(t, w, detach=False):
        th = theta.detach() if detach else theta
        a = math.exp(-(1 - float(t)))
        v = s ** 2 + sigma ** 2 / 2 * (1 - a ** 2)
        return sigma ** 2 * a / v * (th[:, :1] * y - th[:, 1:] * a * w)

    _, w1, log_ratio = solve_weight_path(torch.tensor([w0], dtype=F64), sigma, P, drift=drift, solver={"dt": dt},
                                         estimator=estimator)
    log_py = torch.distributions.Normal(w0 * math.exp(-1), math.sqrt(s ** 2 + sigma ** 2 / 2 * (1 - math.exp(-2))))
    return torch.distributions.Normal(w1[:, 0], s).log_prob(torch.tensor(y, dtype=F64)) - log_ratio, log_py.log_prob(
        torch.tensor(y, dtype=F64))


@pytest.mark.parametrize("theta0", [(1.0, 1.0), (0.9, 1.1)])
def test_stl_gradient_unbiased_and_lower_variance(theta0):
    """Per-path ELBO gradients (one copy of theta per path): STL and plain have the same mean within Monte Carlo
    error; near the exact posterior STL's variance is much lower.  At the optimum the ELBO is log p(y)."""
    P, grads, elbos = 3000, {}, {}
    for estimator in ("plain", "stl"):
        torch.manual_seed(1)
        theta = torch.tensor(theta0, dtype=F64).expand(P, 2).clone().requires_grad_()
        elbo, log_py = _h_transform_elbo(theta, estimator, P)
        elbo.sum().backward()
        grads[estimator], elbos[estimator] = theta.grad, elbo.detach()
    diff = grads["plain"].mean(0) - grads["stl"].mean(0)
    se = ((grads["plain"].var(0) + grads["stl"].var(0)) / P).sqrt()
    assert (diff.abs() < 4 * se).all(), (diff, se)
    ratio = grads["plain"].var(0) / grads["stl"].var(0)
    print(f"theta={theta0}: gradient variance ratio plain/STL = {ratio.tolist()}")
    assert (ratio > (10.0 if theta0 == (1.0, 1.0) else 2.0)).all()
    if theta0 == (1.0, 1.0):  # the bound is tight at the exact posterior (up to an Euler bias of about 0.01)
        for elbo in elbos.values():
            assert abs(elbo.mean() - log_py) < 4 * (elbo.var() / P).sqrt() + 0.02


def test_svi_predictive_and_pickle():
    x = torch.linspace(-2, 2, 16)[:, None]
    y = torch.sin(2 * x) + 0.05 * torch.randn(16, 1)
    net = SDEBNN(1, 1, width=(8,), solver={"dt": 0.25}, obs_scale="learned")
    svi = SVI(net.model, net.guide, pyro.optim.Adam({"lr": 0.02}),
              Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1))
    losses = [svi.step(x, y) for _ in range(60)]
    assert all(math.isfinite(v) for v in losses) and sum(losses[-10:]) < sum(losses[:10])
    assert any(p.abs().sum() > 0 for p in net.drift.params[2:3])  # g_phi moved off zero
    samples = Predictive(net.model, guide=net.guide, num_samples=5, parallel=True)(x)
    assert samples["obs"].shape == (5, 16, 1) and samples["y_mean"].shape == (5, 16, 1)
    assert samples["y_mean"].std(0).mean() > 0  # distinct weight paths
    prior = Predictive(net.model, num_samples=3, parallel=True)(x)  # the model alone is the prior
    assert prior["obs"].shape == (3, 16, 1)
    clone = pickle.loads(pickle.dumps(net))
    assert torch.equal(clone.state_dict()["w0"], net.state_dict()["w0"])


def test_classification_fit_predict_and_ode_net():
    """Both variants fit through the method runner on minibatches and predict through MethodResult; only the
    SDE-BNN's predictive probabilities vary between draws."""
    data = StaticSplit(x=torch.randn(30, 4), y=torch.randint(0, 3, (30,)))
    for stochastic in (True, False):
        net = SDEBNN(4, 3, likelihood="classification", input_layer="linear", hidden_dim=6, width=(6,),
                     solver={"dt": 0.5}, stochastic=stochastic)
        result = run_sdebnn(net, data, num_steps=9, batch_size=10, num_particles=2, progress_bar=False,
                            elbo_particles=0)
        assert len(result.losses) == 9 and result.wall_time > 0 and result.num_model_evals == 9 * 2
        out = result.predict(data, num_samples=4)
        assert out["probs"].shape == (4, 30, 3) and out["obs"].shape == (4, 30)
        torch.testing.assert_close(out["probs"].sum(-1), torch.ones(4, 30))
        assert (out["probs"].std(0).max() > 0) == stochastic
        if stochastic:
            idata = to_inference_data(result, data, num_samples=2, num_chains=1)
            assert idata.posterior["probs"].shape == (1, 2, 30, 3)
            assert idata.log_likelihood["obs"].dims == ("chain", "draw", "observation")


@pytest.mark.parametrize("method,dt,tol", [("reversible_heun", 0.05, 1e-3), ("midpoint", 0.01, 1e-3)])
def test_stochastic_adjoint_matches_backprop(method, dt, tol):
    """Same Brownian path (same seed): the stochastic adjoint's gradients equal backprop through the solver, up to
    the backward solve's discretisation error (relative norm; about 2e-3 for midpoint at dt=0.1, 2e-5 at 0.01)."""
    net = SDEBNN(1, 1, width=(4,)).to(F64)
    with torch.no_grad():
        net.drift.params[2].normal_(0, 0.1)
    x = torch.linspace(-1, 1, 6, dtype=F64)[:, None]
    grads = []
    for adjoint in (True, False):
        net.solver = SDESolver(method=method, dt=dt, adjoint=adjoint)
        torch.manual_seed(3)
        d = net.path_law(x).expand((4,))
        h1 = d.rsample()
        (h1.pow(2).sum() + d.log_prob(h1).sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.drift.params] + [net.w0.grad.flatten()]))
        net.zero_grad()
    assert grads[1].norm() > 0 and (grads[0] - grads[1]).norm() < tol * grads[1].norm()


def test_adaptive_and_other_methods_run():
    x = torch.linspace(-1, 1, 4)[:, None]
    for solver in ({"method": "srk", "adaptive": True, "dt": 0.2}, {"method": "reversible_heun", "dt": 0.2},
                   {"method": "milstein", "dt": 0.2}):
        net = SDEBNN(1, 1, width=(4,), solver=solver)
        h1 = net.path_law(x).expand((2,)).rsample()
        assert h1.shape == (2, 4, 3) and torch.isfinite(h1).all()


def test_bad_input_errors():
    net = SDEBNN(2, 3, likelihood="classification", hidden_dim=4, width=(4,))
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(N, 2\)"):
        net.model(torch.randn(5, 3))
    with pytest.raises(ValueError, match="x: inputs contain NaN"):
        net.model(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        net.model(torch.randn(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer class labels"):
        net.model(torch.randn(2, 2), torch.zeros(2))
    reg = SDEBNN(1, 2)
    with pytest.raises(ValueError, match=r"y: expected targets of shape \(N, 2\)"):
        reg.model(torch.randn(4, 1), torch.randn(4, 3))
    with pytest.raises(ValueError, match="y: targets contain NaN"):
        reg.model(torch.randn(1, 1), torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="y: 3 targets but x has 4"):
        reg.model(torch.randn(4, 1), torch.randn(3, 2))
    for sigma in (0.0, -1.0):
        with pytest.raises(ValueError, match="sigma \\(the weight diffusion\\): expected a finite number > 0"):
            SDEBNN(1, 1, sigma=sigma)
    with pytest.raises(ValueError, match="sigma: the weight diffusion must be positive"):
        solve_weight_path(torch.zeros(2), torch.tensor([0.1, -0.1]), 3)
    with pytest.raises(ValueError, match="estimator='stl' needs an Ito solve"):
        solve_weight_path(torch.zeros(2), 0.1, 3, drift=lambda t, w, detach=False: w, estimator="stl",
                          solver={"method": "midpoint"})
    with pytest.raises(ValueError, match="solver: unknown options"):
        SDEBNN(1, 1, solver={"step": 0.1})
    with pytest.raises(ValueError, match="SDESolver: dt must be in"):
        SDESolver(dt=0.0)
    with pytest.raises(ValueError, match="hidden_dim .* must be >= input_dim"):
        SDEBNN(3, 1, hidden_dim=2)
    with pytest.raises(ValueError, match="w0: expected initial weights of shape"):
        SDEBNN(1, 1, w0=torch.zeros(3))
    d = SDEBNN(1, 1, width=(4,)).path_law(torch.zeros(2, 1))
    with pytest.raises(NotImplementedError, match="only known along its own draws"):
        d.log_prob(torch.zeros(2, 3))


def test_divergence_is_reported():
    from pyro_node_uq.distributions import NODEDivergenceError
    with pytest.raises(NODEDivergenceError, match="diverged"):
        solve_weight_path(torch.ones(2), 0.1, 3, drift=lambda t, w, detach=False: 1e4 * w ** 3,
                          solver={"dt": 0.1})


def test_weight_path_features_docstring_shapes():
    from pyro_node_uq.nn import BatchedMLP
    net = BatchedMLP("f", (2, 8, 2))
    w0 = torch.cat([p.reshape(-1) for p in net.init_params().values()])
    d = WeightPathFeatures(net, net.param_shapes(), torch.randn(5, 2), w0, sigma=0.1).expand((3,))
    h1 = d.rsample()
    assert h1.shape == (3, 5, 2) and d.weights.shape == (3, w0.numel())
