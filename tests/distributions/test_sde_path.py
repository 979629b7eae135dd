"""Weight paths of an SDE-BNN: one Euler path by hand, the in-solve path KL against a closed form and an
independent Girsanov estimate, the STL estimator, divergence and bad input.  Float64, fixed seeds."""
import math

import pytest
import torch

from pyro_node_uq.distributions import (
    NODEDivergenceError,
    SDESolver,
    WeightPathFeatures,
    solve_weight_path,
)
from pyro_node_uq.models import BottleneckDrift
from pyro_node_uq.nn import BatchedMLP

F64 = torch.float64


def test_a_noiseless_prior_path_is_eulers_decay_by_hand():
    """stochastic=False, no drift: dw = -w dt by Euler with dt = 0.25, w1 = w0 (1 - 0.25)^4; log-ratio 0."""
    w0 = torch.tensor([1.0, -2.0], dtype=F64)
    h1, w1, log_ratio = solve_weight_path(w0, 0.3, 3, solver={"dt": 0.25}, stochastic=False)
    assert h1 is None and w1.shape == (3, 2) and torch.equal(log_ratio, torch.zeros(3, dtype=F64))
    torch.testing.assert_close(w1, (w0 * 0.75 ** 4).expand(3, 2))


def test_the_euler_ou_prior_has_its_discrete_moments():
    """The Euler chain w_{k+1} = (1 - dt) w_k + sigma sqrt(dt) xi: mean w0 (1 - dt)^K and variance
    sigma^2 dt (1 - (1 - dt)^(2K)) / (1 - (1 - dt)^2), K = 1 / dt (4 standard errors; 10% on the variance)."""
    torch.manual_seed(0)
    P, dt, sigma, w0 = 4000, 0.1, 0.5, 1.5
    _, w1, _ = solve_weight_path(torch.tensor([w0], dtype=F64), sigma, P, solver={"dt": dt})
    a = (1 - dt) ** 10
    var = sigma ** 2 * dt * (1 - a ** 2) / (1 - (1 - dt) ** 2)
    assert abs(float(w1.mean()) - w0 * a) < 4 * math.sqrt(var / P)
    assert abs(float(w1.var()) / var - 1) < 0.1


def test_same_seed_same_paths():
    torch.manual_seed(5)
    first = solve_weight_path(torch.zeros(3, dtype=F64), 0.2, 4)[1]
    torch.manual_seed(5)
    assert torch.equal(first, solve_weight_path(torch.zeros(3, dtype=F64), 0.2, 4)[1])


@pytest.mark.parametrize("kwargs, match", [
    ({"estimator": "exact"}, "estimator must be one of \\('plain', 'stl'\\), got 'exact'"),
    ({"w0": torch.zeros(2, 2)}, r"w0: expected initial weights of shape \(D,\), got \(2, 2\)"),
    ({"h0": torch.zeros(3, 2)}, "net and h0: give both"),
    ({"solver": {"method": "rk4"}}, "SDESolver: method must be one of"),
    ({"solver": {"dt": 0.1, "rtol": 0.0}}, "rtol, atol and dt_min must be positive")])
def test_bad_input_is_refused_by_name(kwargs, match):
    args = {"w0": torch.zeros(2), "sigma": 0.1, "num_particles": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        solve_weight_path(**args)


def test_hidden_units_of_the_wrong_width_are_refused():
    net = BatchedMLP("f", (2, 4, 2))
    w0 = torch.cat([p.reshape(-1) for p in net.init_params().values()])
    with pytest.raises(ValueError, match=r"h0: expected shape \(N, 2\), got \(5, 3\)"):
        solve_weight_path(w0, 0.1, 2, net, net.param_shapes(), torch.zeros(5, 3))
    assert SDESolver(method="midpoint").sde_type == "stratonovich" and SDESolver().sde_type == "ito"


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


def test_divergence_is_reported():
    with pytest.raises(NODEDivergenceError, match="diverged"):
        solve_weight_path(torch.ones(2), 0.1, 3, drift=lambda t, w, detach=False: 1e4 * w ** 3,
                          solver={"dt": 0.1})


def test_weight_path_features_docstring_shapes():
    net = BatchedMLP("f", (2, 8, 2))
    w0 = torch.cat([p.reshape(-1) for p in net.init_params().values()])
    d = WeightPathFeatures(net, net.param_shapes(), torch.randn(5, 2), w0, sigma=0.1).expand((3,))
    h1 = d.rsample()
    assert h1.shape == (3, 5, 2) and d.weights.shape == (3, w0.numel())
