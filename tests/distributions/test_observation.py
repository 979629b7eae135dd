"""NODEObservation: every error model and noise against scipy (float64), censoring below a limit, masks,
diverged members, sampling, expand, errors naming the argument."""
import numpy as np
import pytest
import torch

from pyro_node_uq.distributions.observation import NODEObservation

st = pytest.importorskip("scipy.stats")
F = torch.tensor([[[0.5], [2.0], [8.0]], [[1.0], [3.0], [0.2]]], dtype=torch.float64)  # (N=2, T=3, 1)
Y = torch.tensor([[[0.7], [1.5], [9.0]], [[0.9], [3.3], [0.1]]], dtype=torch.float64)
A, B, DF = 0.3, 0.2, 5.0


def reference_sd(model, f):
    return {"additive": A + 0 * f, "proportional": A * np.abs(f), "combined": np.sqrt(A ** 2 + (B * f) ** 2),
            "lognormal": A + 0 * f}[model]


@pytest.mark.parametrize("noise", ["normal", "studentt"])
@pytest.mark.parametrize("model", ["additive", "proportional", "combined", "lognormal"])
def test_pointwise_log_density_matches_scipy(model, noise):
    d = NODEObservation(F, A, error_model=model, noise=noise, df=DF, prop_scale=B)
    f, y, sd = F.numpy(), Y.numpy(), reference_sd(model, F.numpy())
    law = st.norm(loc=0, scale=1) if noise == "normal" else st.t(DF)
    if model == "lognormal":
        want = law.logpdf((np.log(y) - np.log(f)) / sd) - np.log(sd) - np.log(y)
    else:
        want = law.logpdf((y - f) / sd) - np.log(sd)
    np.testing.assert_allclose(d.log_prob_pointwise(Y).numpy(), want, rtol=1e-10)
    np.testing.assert_allclose(d.log_prob(Y).numpy(), want.sum((-1, -2)), rtol=1e-10)


@pytest.mark.parametrize("noise", ["normal", "studentt"])
@pytest.mark.parametrize("model", ["additive", "lognormal"])
def test_censored_entries_score_the_cdf_at_the_limit(model, noise):
    cens = torch.zeros_like(F, dtype=torch.bool)
    cens[1, 2] = cens[0, 0] = True
    d = NODEObservation(F, A, error_model=model, noise=noise, df=DF, censored=cens)
    lp = d.log_prob_pointwise(Y)
    law = st.norm() if noise == "normal" else st.t(DF)
    for i, j in [(1, 2), (0, 0)]:
        f, y = float(F[i, j, 0]), float(Y[i, j, 0])
        z = (np.log(y) - np.log(f)) / A if model == "lognormal" else (y - f) / A
        assert float(lp[i, j, 0]) == pytest.approx(law.logcdf(z), rel=1e-9)
    plain = NODEObservation(F, A, error_model=model, noise=noise, df=DF).log_prob_pointwise(Y)
    assert torch.equal(lp[~cens], plain[~cens])


def test_mask_and_divergence():
    mask = torch.ones_like(F, dtype=torch.bool)
    mask[0, 1] = False
    diverged = torch.tensor([[False, False], [True, False]])  # (particles=2, N=2)
    d = NODEObservation(F.expand(2, 2, 3, 1), A, mask=mask, diverged=diverged)
    lp = d.log_prob_pointwise(Y)
    assert lp[0, 0, 1, 0] == 0 and lp[1, 0, 1, 0] == 0  # unobserved: 0 even for a diverged member
    assert torch.isinf(lp[1, 0][mask[0]]).all() and torch.isfinite(lp[1, 1]).all()
    assert d.log_prob(Y).isinf().tolist() == [[False, False], [True, False]]


def test_lognormal_refuses_nonpositive_observations():
    y = Y.clone()
    y[0, 0] = -1.0
    with pytest.raises(ValueError, match="value: the 'lognormal'"):
        NODEObservation(F, A, error_model="lognormal").log_prob(y)
    mask = torch.ones_like(F, dtype=torch.bool)
    mask[0, 0] = False
    assert torch.isfinite(NODEObservation(F, A, error_model="lognormal", mask=mask).log_prob(y)).all()


@pytest.mark.parametrize("model", ["combined", "lognormal"])
def test_samples_have_the_model_moments(model):
    torch.manual_seed(0)
    d = NODEObservation(F, A, error_model=model, prop_scale=B)
    y = d.sample((40000,))
    assert y.shape == (40000, 2, 3, 1)
    torch.testing.assert_close(y.mean(0), d.mean, rtol=0.02, atol=0.01)
    torch.testing.assert_close(y.var(0), d.variance, rtol=0.06, atol=0.01)


def test_expand_keeps_divergence_and_errors():
    d = NODEObservation(F, A, diverged=torch.tensor([False, True]))
    e = d.expand((3, 2))
    assert e.batch_shape == (3, 2) and e.log_prob(Y).isinf()[:, 1].all()
    with pytest.raises(ValueError, match="error_model"):
        NODEObservation(F, A, error_model="exponential")
    with pytest.raises(ValueError, match="prop_scale"):
        NODEObservation(F, A, error_model="combined")
    with pytest.raises(TypeError, match="censored"):
        NODEObservation(F, A, censored=torch.zeros(2, 3, 1))


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan")])
def test_nonpositive_scale_is_refused_by_name(scale):
    """The observation validates its own scale (its elementwise law is built unvalidated)."""
    with pytest.raises(ValueError, match="scale"):
        NODEObservation(torch.zeros(3, 1), scale)
    d = NODEObservation(torch.zeros(3, 1), scale, validate_args=False)  # asked not to validate: no check
    assert d.batch_shape == ()


@pytest.mark.parametrize("model", ["additive", "proportional", "combined", "lognormal"])
def test_error_model_is_checked_once_and_its_rule_is_the_observations(model):
    """``ErrorModel.coerce`` is the one check (an instance passes through unchanged) and ``ErrorModel.sd`` the
    one rule: the observation's scale, and the model's scoring noise std where ``y`` is Normal around ``f``."""
    from pyro_node_uq.distributions import ErrorModel
    from pyro_node_uq.models import NODEModel

    law = ErrorModel.coerce(model, "normal", DF)
    assert ErrorModel.coerce(law) is law and NODEObservation(F, A, law, prop_scale=B).law is law
    torch.testing.assert_close(torch.as_tensor(law.sd(F, A, B), dtype=F.dtype).expand_as(F),
                               torch.as_tensor(reference_sd(model, F.numpy())))
    node = NODEModel(obs_dim=1, scale=A, error_model=model, prop_scale=B if model == "combined" else None)
    scoring = node.noise_scale(None, {"y_mean": F})
    if model == "lognormal":
        assert scoring is None and not law.normal_around_mean
    else:
        sd = NODEObservation(F, A, law, prop_scale=B).variance.sqrt()
        torch.testing.assert_close(torch.as_tensor(scoring, dtype=F.dtype).expand_as(F), sd)
    with pytest.raises(ValueError, match="noise, df: an ErrorModel carries its own"):
        ErrorModel.coerce(law, noise="studentt")
    with pytest.raises(ValueError, match="df .*expected a finite number > 0"):
        ErrorModel.coerce(model, "studentt", 0.0)
