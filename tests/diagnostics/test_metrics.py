"""Predictive scores against closed forms for Gaussian predictives (stratified samples, fixed seeds)."""
import math

import pytest
import torch

from pyro_node_uq.diagnostics import (
    calibration_curve,
    crps,
    crps_normal_mixture,
    energy_distance,
    interval_coverage,
    predictive_nll,
    rmse,
    score,
)

Normal = torch.distributions.Normal


def stratified(mu, s, S=4000):
    """Quantile-spaced samples of N(mu, s^2): (S,) + mu.shape, empirical quantiles match the Gaussian's."""
    u = (torch.arange(S, dtype=torch.float64) + 0.5) / S
    z = Normal(0.0, 1.0).icdf(u).reshape((S,) + (1,) * mu.dim())
    return mu + s * z


@pytest.fixture
def gaussian():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)
    s = 0.5 + torch.rand(3, 5, 2, generator=gen, dtype=torch.float64)
    z = torch.linspace(-2.5, 2.5, 30, dtype=torch.float64).reshape(3, 5, 2)  # known standardised residuals
    return mu, s, mu + s * z, z


def test_crps_gaussian_closed_form(gaussian):
    mu, s, y, z = gaussian
    phi, Phi = Normal(0.0, 1.0).log_prob(z).exp(), Normal(0.0, 1.0).cdf(z)
    exact = (s * (z * (2 * Phi - 1) + 2 * phi - 1 / math.sqrt(math.pi))).mean()
    assert crps(stratified(mu, s), y) == pytest.approx(float(exact), rel=2e-3)


def test_nll_single_gaussian_and_mixture(gaussian):
    mu, s, y, _ = gaussian
    exact = -Normal(mu, s).log_prob(y).mean()
    assert predictive_nll(mu.expand(7, *mu.shape), y, s) == pytest.approx(float(exact), rel=1e-10)
    means = torch.stack([mu, mu + 1.0])  # a two-component mixture, by hand
    mix = -torch.log(0.5 * Normal(mu, s).log_prob(y).exp() + 0.5 * Normal(mu + 1.0, s).log_prob(y).exp()).mean()
    assert predictive_nll(means, y, s) == pytest.approx(float(mix), rel=1e-10)


def test_coverage_width_rmse(gaussian):
    mu, s, y, z = gaussian
    samples = stratified(mu, s)
    for level in (0.5, 0.9, 0.95):
        half = Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2, dtype=torch.float64))
        cov, width = interval_coverage(samples, y, level)
        assert cov == pytest.approx(float((z.abs() < half).double().mean()), abs=1e-12)
        assert width == pytest.approx(float((2 * half * s).mean()), rel=2e-3)
    assert rmse(samples, y) == pytest.approx(float(((y - mu) ** 2).mean().sqrt()), rel=1e-6)


def test_calibration_curve_calibrated_and_overconfident():
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(20, 50, 1, generator=gen, dtype=torch.float64)
    y = mu + torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    nominal, observed, area = calibration_curve(stratified(mu, 1.0, 500), y)
    assert nominal.shape == observed.shape == (19,)
    assert area < 0.03
    _, observed_narrow, area_narrow = calibration_curve(stratified(mu, 0.3, 500), y)
    assert area_narrow > 0.2 and (observed_narrow < nominal).all()


def test_energy_distance_gaussians_closed_form():
    gen = torch.Generator().manual_seed(2)
    S, m = 3000, 1.5
    p = torch.randn(S, 1, 1, 1, generator=gen, dtype=torch.float64)
    q = m + torch.randn(S, 1, 1, 1, generator=gen, dtype=torch.float64)
    r = torch.randn(S, 1, 1, 1, generator=gen, dtype=torch.float64)
    # X - Y ~ N(-m, 2): E|X - Y| = sqrt(2) sqrt(2/pi) exp(-m^2/4) + m (1 - 2 Phi(-m / sqrt 2)); E|X - X'| = 2/sqrt(pi)
    e_xy = 2 / math.sqrt(math.pi) * math.exp(-m * m / 4) + m * (1 - 2 * float(Normal(0.0, 1.0).cdf(
        torch.tensor(-m / math.sqrt(2)))))
    exact = 2 * e_xy - 4 / math.sqrt(math.pi)
    assert energy_distance(p, q) == pytest.approx(exact, abs=0.05)
    assert abs(energy_distance(p, r)) < 0.01


def test_mask_is_respected(gaussian):
    mu, s, y, _ = gaussian
    samples = stratified(mu, s, 200)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    y_bad = y.clone()
    y_bad[1] = 1e6
    keep = torch.tensor([0, 2])
    pred = {"obs": samples, "y_mean": mu.expand(3, *mu.shape)}
    masked = score(pred, y_bad, mask, noise_scale=s)
    sub = score({k: v[:, keep] for k, v in pred.items()}, y[keep], noise_scale=s[keep])
    for key in ("rmse", "crps", "nll", "coverage_90", "width_90", "miscalibration_area"):
        assert masked[key] == pytest.approx(sub[key], rel=1e-10), key


def test_score_keys_hidden_and_errors(gaussian):
    mu, s, y, _ = gaussian
    pred = {"obs": stratified(mu, s, 100), "y_mean": mu.expand(4, *mu.shape),
            "hidden": stratified(torch.cat([mu, mu], -1), 1.0, 100)}
    out = score(pred, y, noise_scale=s, h_true=mu, reference=pred)
    for key in ("rmse", "nll", "crps", "coverage_50", "width_95", "miscalibration_area", "energy_distance",
                "hidden_rmse", "hidden_coverage_90"):
        assert math.isfinite(out[key]), key
    assert out["hidden_rmse"] < 0.05  # hidden[..., :2] is centred on h_true = mu
    with pytest.raises(ValueError, match="samples: expected shape"):
        rmse(pred["obs"][:, :2], y)
    with pytest.raises(ValueError, match="h_true"):
        score(pred, y, h_true=torch.zeros(3, 5, 9))


def test_crps_normal_mixture_closed_form_and_samples(gaussian):
    """One Normal per entry: the closed form; a two-draw mixture: the sample CRPS of many noisy draws (float64)."""
    mu, s, y, z = gaussian
    phi, Phi = Normal(0.0, 1.0).log_prob(z).exp(), Normal(0.0, 1.0).cdf(z)
    exact = (s * (z * (2 * Phi - 1) + 2 * phi - 1 / math.sqrt(math.pi))).mean()
    assert crps_normal_mixture(mu.expand(3, *mu.shape), y, s) == pytest.approx(float(exact), rel=1e-12)
    means = torch.stack([mu, mu + 0.8])
    noisy = torch.cat([stratified(mu, s), stratified(mu + 0.8, s)])  # each draw's noise law, half the samples each
    assert crps_normal_mixture(means, y, s) == pytest.approx(crps(noisy, y), rel=2e-3)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0] = True
    assert crps_normal_mixture(means, y, s, mask) == pytest.approx(crps(noisy[:, :1], y[:1]), rel=2e-3)
    with pytest.raises(ValueError, match="scale must be positive"):
        crps_normal_mixture(means, y, 0.0)


def test_score_crps_is_the_noise_integrated_one(gaussian):
    mu, s, y, _ = gaussian
    means = torch.stack([mu, mu - 0.5])
    pred = {"obs": means + s * torch.randn(2, *mu.shape, dtype=torch.float64), "y_mean": means}
    assert score(pred, y, noise_scale=s)["crps"] == crps_normal_mixture(means, y, s)
    assert score(pred, y)["crps"] == crps(pred["obs"], y)  # no noise model: the samples'


def _all_pairs_crps(y_mean, y, scale):
    """The mixture CRPS from every pair of draws (the O(S^2) definition), float64."""
    n = Normal(0.0, 1.0)

    def abs_mean(mu, var):
        sd = var.sqrt()
        return 2 * sd * n.log_prob(mu / sd).exp() + mu * (2 * n.cdf(mu / sd) - 1)

    var = (scale ** 2).expand(y_mean.shape)
    pair = abs_mean(y_mean[:, None] - y_mean[None], var[:, None] + var[None]).mean((0, 1))
    return float((abs_mean(y_mean - y, var).mean(0) - 0.5 * pair).mean())


def test_crps_normal_mixture_pairs_exact_for_few_values_estimated_for_many():
    """Tiled draws (5 distinct, each 40 times) and per-draw scales: exact; 200 distinct draws: exact by default,
    within 1e-2 relative (and not equal) with 16 shifts (fixed seeds, float64)."""
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(4, 6, 2, generator=gen, dtype=torch.float64)
    members = y + 0.5 * torch.randn(5, 4, 6, 2, generator=gen, dtype=torch.float64)
    scales = 0.2 + torch.rand(5, 1, 1, 2, generator=gen, dtype=torch.float64)
    tiled, tiled_scales = members.repeat(40, 1, 1, 1), scales.repeat(40, 1, 1, 1)
    exact = _all_pairs_crps(members, y, scales)
    assert crps_normal_mixture(tiled, y, tiled_scales) == pytest.approx(exact, rel=1e-12)
    assert _all_pairs_crps(tiled, y, tiled_scales) == pytest.approx(exact, rel=1e-12)
    draws = y + 0.5 * torch.randn(200, 4, 6, 2, generator=gen, dtype=torch.float64)
    full = _all_pairs_crps(draws, y, torch.tensor(0.3, dtype=torch.float64))
    assert crps_normal_mixture(draws, y, 0.3) == pytest.approx(full, rel=1e-12)
    assert crps_normal_mixture(draws, y, 0.3, num_shifts=199) == pytest.approx(full, rel=1e-12)
    estimate = crps_normal_mixture(draws, y, 0.3, num_shifts=16)
    assert estimate == pytest.approx(full, rel=1e-2) and estimate != pytest.approx(full, rel=1e-6)
