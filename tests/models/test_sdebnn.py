"""SDE-BNN: prior = posterior at g = 0, the Pyro model/guide contract, the stochastic adjoint and bad input (the
weight-path solve's own tests, the path KL and STL, are in tests/distributions/test_sde_path.py).  Statistical checks run in float64 with fixed seeds."""
import math
import pickle

import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO

from pyro_node_uq.data import StaticSplit
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.distributions import SDESolver, solve_weight_path
from pyro_node_uq.methods import run_sdebnn
from pyro_node_uq.models import SDEBNN

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed_and_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs cost more than they save on a shared machine
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    torch.set_num_threads(threads)


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
