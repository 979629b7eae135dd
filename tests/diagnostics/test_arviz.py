"""The ArviZ converter on a conjugate Normal model (exact posterior known) and on NODE MCMC runs."""
import math

import arviz as az
import matplotlib
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import xarray as xr
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import Split
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.infer import fit_svi

matplotlib.use("Agg")
TAU, SIGMA = 2.0, 0.5  # prior std of mu, noise std


def model(t, x=None, y=None, mask=None, num_trajectories=None):
    """mu ~ N(0, TAU^2 I_2); y[n, t, :] ~ N(mu, SIGMA^2) inside the "trajectories" plate, like the NODE model."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros(2, dtype=t.dtype), TAU).to_event(1))
    N = y.shape[0] if y is not None else num_trajectories
    loc = mu[..., None, None, :]  # draws (S, 2) -> (S, 1, 1, 2): trajectory and time dims after the draw dims
    fn = dist.Normal(loc, SIGMA).expand(loc.shape[:-3] + (N, len(t), 2))
    if mask is not None:
        fn = fn.mask(mask[..., None] if mask.dim() == 2 else mask)
    fn = fn.to_event(2)
    with pyro.plate("trajectories", N, dim=-1):
        return pyro.sample("obs", fn, obs=y)


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 6, dtype=torch.float64)
    y = torch.tensor([0.7, -0.3], dtype=torch.float64) + SIGMA * torch.randn(4, 6, 2, generator=gen,
                                                                             dtype=torch.float64)
    split = Split(t=t, x=None, y=y)
    prec = 1 / TAU**2 + y[..., 0].numel() / SIGMA**2
    post_mean, post_std = y.sum((0, 1)) / SIGMA**2 / prec, torch.full((2,), prec**-0.5, dtype=torch.float64)
    draws = post_mean + post_std * torch.randn(400, 2, generator=gen, dtype=torch.float64)
    return split, post_mean, post_std, draws


@pytest.fixture(scope="module")
def idata(data):
    split, _, _, draws = data
    return to_inference_data({"mu": draws}, split, model=model, num_chains=4)


def test_groups_dims_and_posterior(idata, data):
    split, _, _, draws = data
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data", "constant_data"):
        assert group in idata.groups(), group
    np.testing.assert_array_equal(idata.posterior["mu"].values, draws.reshape(4, 100, 2).numpy())
    assert idata.posterior_predictive["obs"].dims == ("chain", "draw", "trajectory", "time", "output")
    assert idata.log_likelihood["obs"].dims == ("chain", "draw", "trajectory", "time", "output")
    np.testing.assert_allclose(idata.constant_data["t"].values, split.t.numpy())
    np.testing.assert_allclose(idata.observed_data["obs"].values, split.y.numpy())
    np.testing.assert_allclose(idata.posterior_predictive["time"].values, split.t.numpy())


def test_log_likelihood_matches_hand_computation(idata, data):
    split, _, _, draws = data
    hand = torch.distributions.Normal(draws[:, None, None, :], SIGMA).log_prob(split.y)  # (S, N, T, outputs)
    np.testing.assert_allclose(idata.log_likelihood["obs"].values, hand.reshape(4, 100, 4, 6, 2).numpy(),
                               rtol=1e-10)


def test_posterior_predictive_matches_exact(idata, data):
    _, mean, std, _ = data
    pp = idata.posterior_predictive["obs"].values.reshape(-1, 2)
    np.testing.assert_allclose(pp.mean(0), mean.numpy(), atol=0.05)  # 9600 draws, predictive std ~0.5
    np.testing.assert_allclose(pp.std(0), math.sqrt(SIGMA**2 + float(std[0]) ** 2), rtol=0.05)


def test_arviz_functions_work(idata, data, tmp_path):
    _, mean, _, _ = data
    summary = az.summary(idata, var_names=["mu"])
    np.testing.assert_allclose(summary["mean"].values, mean.numpy(), atol=0.03)
    assert (summary["r_hat"] < 1.05).all()
    loo, waic = az.loo(idata), az.waic(idata)
    assert math.isfinite(loo.elpd_loo) and math.isfinite(waic.elpd_waic)
    assert az.plot_ppc(idata, num_pp_samples=20) is not None
    path = tmp_path / "conjugate.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    for group in idata.groups():
        xr.testing.assert_identical(getattr(idata, group), getattr(back, group))


def test_guide_chains_and_mask(data):
    split, mean, _std, _ = data
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoNormal(model)
    fit_svi(model, guide, split, num_steps=400, lr=0.1, progress_bar=False)
    masked = Split(t=split.t, x=None, y=split.y, mask=torch.ones(4, 6, dtype=torch.bool))
    masked.mask[0, :3] = False
    idata = to_inference_data(guide, masked, model=model, num_samples=200, num_chains=4)
    assert idata.posterior["mu"].shape == (4, 50, 2)
    np.testing.assert_allclose(idata.posterior["mu"].values.reshape(-1, 2).mean(0), mean.numpy(), atol=0.06)
    # only the 21 observed points: no constant-zero log-likelihoods, no predictions of unobserved grid points
    for group in ("log_likelihood", "posterior_predictive", "observed_data"):
        obs = getattr(idata, group)["obs"]
        assert obs.sizes["observation"] == 21 and "trajectory" not in obs.dims, group
        assert obs["obs_trajectory"].values.tolist() == [0] * 3 + [1] * 6 + [2] * 6 + [3] * 6
        assert obs["obs_time"].values.tolist()[:4] == split.t[3:].tolist() + [0.0]
    np.testing.assert_allclose(idata.observed_data["obs"].values, split.y[masked.mask].numpy())
    mu = torch.as_tensor(idata.posterior["mu"].values.reshape(-1, 2))
    hand = torch.distributions.Normal(mu[:, None, None, :], SIGMA).log_prob(split.y)[:, masked.mask]
    np.testing.assert_allclose(idata.log_likelihood["obs"].values, hand.reshape(4, 50, 21, 2).numpy(), rtol=1e-10)
    assert idata.posterior_predictive["obs"].shape == (4, 50, 21, 2)
    assert idata.constant_data["mask"].dims == ("trajectory", "time", "output")
    loo = az.loo(idata, pointwise=True)
    assert loo.pareto_k.size == 42  # 21 observed points x 2 outputs


def test_misspelt_or_missing_posterior_sites_are_refused(data):
    """A draw named ``"m"`` for site ``"mu"`` used to be ignored: ``mu`` came from the prior, scored as posterior."""
    split = data[0]
    with pytest.raises(ValueError, match=r"unknown \['m'\], missing \['mu'\]"):
        to_inference_data({"m": torch.randn(40, 2)}, split, model=model)
    with pytest.raises(ValueError, match="obs_site: the model has no observed sample site 'y'"):
        to_inference_data({"mu": torch.randn(40, 2)}, split, model=model, obs_site="y")


def test_mcmc_sample_stats_and_from_pyro(data):
    split, mean, _std, _ = data
    pyro.set_rng_seed(1)
    mcmc = MCMC(NUTS(model, max_plate_nesting=1), num_samples=100, warmup_steps=100, num_chains=1,
                disable_progbar=True)
    mcmc.run(*split.args)
    idata = to_inference_data(mcmc, split)
    assert idata.sample_stats["diverging"].shape == (1, 100)
    assert idata.sample_stats["acceptance_rate"].shape == (1, 100)
    np.testing.assert_allclose(idata.posterior["mu"].values.reshape(-1, 2).mean(0), mean.numpy(), atol=0.05)
    ref = az.from_pyro(mcmc)
    assert {"posterior", "log_likelihood", "sample_stats"} <= set(ref.groups())
    np.testing.assert_allclose(ref.posterior["mu"].values, idata.posterior["mu"].values)


def test_bad_inputs(data):
    split, _, _, draws = data
    with pytest.raises(ValueError, match="model"):
        to_inference_data({"mu": draws}, split)
    with pytest.raises(ValueError, match="num_chains"):
        to_inference_data({"mu": draws[:10]}, split, model=model, num_chains=4)
    with pytest.raises(TypeError, match="MethodResult"):
        to_inference_data(3, split, model=model)


@pytest.mark.parametrize("masked", [False, True])
def test_log_likelihood_keeps_every_observed_entry(masked):
    """A fixed initial state observed directly makes y(t0)'s log-likelihood the same for every draw; it is still
    an observation, so log_likelihood holds it (the old converter dropped it: az.loo then scored fewer points
    than observed_data held) and az.loo runs on exactly the observed entries."""
    from pyro_node_uq.models import NODEModel

    gen = torch.Generator().manual_seed(1)
    model = NODEModel(obs_dim=1, hidden_dim=2, R_hidden=(4,), Z_hidden=None, scale=0.2, error_model="combined",
                      prop_scale=0.1)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    y = 0.2 * torch.randn(3, 5, 1, generator=gen, dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    split = Split(t=t, x=None, y=y, mask=mask if masked else None)
    draws = {k: 0.3 * torch.randn((40,) + s, generator=gen, dtype=torch.float64)
             for k, s in model.weight_shapes().items()}
    idata = to_inference_data(draws, split, model=model, num_chains=2)
    ll, obs = idata.log_likelihood["obs"], idata.observed_data["obs"]
    n_obs = int(mask.sum()) if masked else 15
    assert ll.shape[2:] == obs.shape and int(np.isfinite(obs.values).sum()) == n_obs == ll[0, 0].size
    first = ll.values[..., 0, 0] if masked else ll.values[..., 0, 0, 0]
    assert np.all(first == first.flat[0])  # y(t0) = h0 = 0 for every draw: constant, and kept
    sd = torch.sqrt(0.2**2 + (0.1 * torch.as_tensor(idata.posterior["y_mean"].values)) ** 2)
    hand = torch.distributions.Normal(torch.as_tensor(idata.posterior["y_mean"].values), sd).log_prob(y)
    want = hand[:, :, mask] if masked else hand
    np.testing.assert_allclose(ll.values, want.numpy(), rtol=1e-10)
    with np.errstate(all="ignore"):
        loo = az.loo(idata, pointwise=True)
    assert loo.loo_i.size == n_obs and math.isfinite(loo.elpd_loo)


def test_per_unit_times_and_doses_give_the_observed_entries_with_their_own_times():
    """Units with their own padded times: log_likelihood, observed_data and posterior_predictive hold the real
    entries only, each with its unit and its own time."""
    from types import SimpleNamespace

    from pyro_node_uq.distributions import DoseSchedule
    from pyro_node_uq.models import NODEModel

    gen = torch.Generator().manual_seed(2)
    model = NODEModel(obs_dim=1, R_hidden=(4,), Z_hidden=None, scale=0.2, error_model="proportional")
    t = torch.tensor([[0.5, 1.0, 3.0], [0.2, 2.5, 0.0]], dtype=torch.float64)
    t_mask = torch.tensor([[True, True, True], [True, True, False]])
    y = torch.tensor([[0.9, 0.7, 0.4], [1.8, 0.6, 0.0]], dtype=torch.float64)[..., None]
    doses = DoseSchedule.from_lists([[0.0], [0.0, 2.0]], [[1.0], [2.0, 1.0]], dtype=torch.float64)
    split = SimpleNamespace(t=t, x=None, y=y, mask=None, ids=torch.tensor([11, 12]), args=(t, None, y),
                            kwargs={"t_mask": t_mask, "doses": doses, "t0": 0.0})
    draws = {k: 0.3 * torch.randn((20,) + s, generator=gen, dtype=torch.float64)
             for k, s in model.weight_shapes().items()}
    idata = to_inference_data(draws, split, model=model, num_chains=2)
    for group in ("log_likelihood", "observed_data", "posterior_predictive"):
        obs = getattr(idata, group)["obs"]
        assert obs.sizes["observation"] == 5, group
        assert obs["obs_trajectory"].values.tolist() == [11, 11, 11, 12, 12]
        assert obs["obs_time"].values.tolist() == [0.5, 1.0, 3.0, 0.2, 2.5]
    assert np.isfinite(idata.log_likelihood["obs"].values).all()
    assert idata.constant_data["t"].dims == ("trajectory", "time")


def test_per_unit_latents_get_the_trajectory_dim_whatever_the_plate_is_called(data):
    """A latent inside the observed site's plate (a random effect per unit) keeps a ``trajectory`` dim; the plate
    is found from the observed site, so a model calling it "subjects" converts like one calling it
    "trajectories"."""
    split = data[0]

    def subjects_model(t, x=None, y=None, mask=None, num_trajectories=None):
        N = y.shape[0]
        with pyro.plate("subjects", N, dim=-1):
            eta = pyro.sample("eta", dist.Normal(torch.zeros(2, dtype=t.dtype), 1.0).to_event(1))
            loc = eta[..., None, :].expand(eta.shape[:-1] + (len(t), 2))
            return pyro.sample("obs", dist.Normal(loc, SIGMA).to_event(2), obs=y)

    eta = torch.randn(8, 4, 2, dtype=torch.float64)
    idata = to_inference_data({"eta": eta}, split, model=subjects_model, num_chains=2)
    assert idata.posterior["eta"].dims == ("chain", "draw", "trajectory", "eta_dim_0")
    np.testing.assert_array_equal(idata.posterior["eta"].values, eta.reshape(2, 4, 4, 2).numpy())


def test_new_units_get_their_effects_from_the_population_not_the_fitted_units():
    """A hierarchical fit converted on held-out units (``new_units``): the fitted units' effects ``eta_z`` were
    refused as unknown sites and the new units' ``eta_z_new`` as missing, so no InferenceData was written for any
    method of ``compare --data``.  Now the posterior holds the new units' effects, drawn from the population, one
    per held-out unit, and no fitted unit's; the log-likelihood is the predictive's."""
    from pyro_node_uq.data import pk_repeated
    from pyro_node_uq.methods import run_map

    problem = pk_repeated(num_units=12, num_obs=5, noise=0.1, seed=2)
    assert problem.test.new_units and not problem.train.new_units
    model = problem.default_model(R_hidden=(4,))
    res = run_map(model, problem.train, num_steps=5, progress_bar=False)
    idata = to_inference_data(res, problem.test, num_samples=8, num_chains=2)
    assert "eta_z" not in idata.posterior and idata.posterior["eta_z_new"].sizes["trajectory"] == len(problem.test)
    assert idata.posterior["eta_z_new"].values.std() > 0.1  # drawn per draw and unit, not the fitted values
    assert np.isfinite(idata.log_likelihood["obs"].values).all()
    fitted = to_inference_data(res, problem.train, num_samples=8, num_chains=2)
    assert "eta_z_new" not in fitted.posterior and fitted.posterior["eta_z"].sizes["trajectory"] == len(problem.train)
