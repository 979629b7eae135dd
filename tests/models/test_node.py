import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.distributions import DoseSchedule, NODEObservation, solve_node
from pyro_node_uq.models import NODEModel


def _data(N=4, T=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, T)
    return t, torch.randn(N, T, 1, generator=gen), torch.randn(N, T, 2, generator=gen)


def _model(**kw):
    kw = {"obs_dim": 2, "input_dim": 1, "hidden_dim": 3, "R_hidden": (6,), **kw}
    return NODEModel(**kw)


def test_sites_are_named_by_network_and_layer():
    t, x, y = _data()
    model = _model(init="input", scale="latent")
    tr = pyro.poutine.trace(model).get_trace(t, x, y)
    latents = [n for n, s in tr.nodes.items() if s["type"] == "sample" and not s["is_observed"] and n != "trajectories"]
    assert latents == ["R.0.weight", "R.0.bias", "R.1.weight", "R.1.bias", "Z.0.weight", "Z.0.bias",
                       "H0.0.weight", "H0.0.bias", "sigma"]
    assert tr.nodes["obs"]["fn"].batch_shape == (4,) and tr.nodes["hidden"]["value"].shape == (4, 9, 3)
    assert model.layer_sites("last_layer") == ["Z.0.weight", "Z.0.bias"]
    assert model.layer_sites("first_layer") == ["R.0.weight", "R.0.bias"]


@pytest.mark.parametrize("init,scale", [("zero", 0.2), ("learned", "latent"), ("input", "learned")])
def test_vectorised_elbo_and_svi_step(init, scale):
    t, x, y = _data()
    model = _model(init=init, scale=scale)
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0))
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    losses = [svi.step(t, x, y) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    tr = pyro.poutine.trace(guide).get_trace(t, x, y)
    for name, site in pyro.get_param_store().items():
        assert torch.isfinite(site).all(), name
    assert tr is not None


def test_vectorised_elbo_equals_mean_of_single_particle_elbos():
    t, x, y = _data()
    model = _model()
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0), init_scale=0.05)
    guide(t, x, y)
    P = 8
    with pyro.plate("particles", P, dim=-2):
        gtr = pyro.poutine.trace(guide).get_trace(t, x, y)
    mtr = pyro.poutine.trace(pyro.poutine.replay(model, gtr)).get_trace(t, x, y)
    lp = mtr.nodes["obs"]["fn"].log_prob(y)  # (P, N)
    for p in range(P):
        single = {n: s["value"][p, 0] for n, s in gtr.nodes.items() if s["type"] == "sample"}
        tr1 = pyro.poutine.trace(pyro.poutine.condition(model, single)).get_trace(t, x, y)
        assert torch.allclose(tr1.nodes["obs"]["fn"].log_prob(y), lp[p], atol=1e-10)


def test_predictive_parallel_matches_sequential():
    t, x, _y = _data()
    model = _model(init="learned", scale="latent")
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0))
    post = Predictive(model, guide=guide, num_samples=6, parallel=True)(t, x)
    samples = {k: v for k, v in post.items() if k not in ("obs", "hidden", "y_mean")}
    par = Predictive(model, posterior_samples=samples, parallel=True, return_sites=["y_mean", "obs"])(t, x)
    seq = Predictive(model, posterior_samples=samples, parallel=False, return_sites=["y_mean", "obs"])(t, x)
    assert par["y_mean"].shape == (6, 4, 9, 2) == seq["y_mean"].shape
    assert torch.allclose(par["y_mean"], seq["y_mean"], atol=1e-10)


@pytest.mark.parametrize("kwargs,match", [
    ({"hidden_dim": 1}, "hidden_dim .1. must be >= obs_dim .2."),
    ({"scale": 0.0}, "noise scale.*expected a finite number > 0"),
    ({"scale": -1.0}, "noise scale.*expected a finite number > 0"),
    ({"scale": "big"}, "scale must be"),
    ({"init": "input", "input_dim": 0}, "needs input_dim"),
    ({"init": torch.zeros(2)}, "init: a fixed initial state must have shape"),
    ({"prior_scale": {"R.*": 1.0}}, "no pattern matches site 'Z.0.weight'"),
    ({"prior_scale": -1.0}, "prior_scale for site"),
])
def test_bad_model_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _model(**kwargs)


def test_bad_data_names_the_argument():
    t, x, y = _data()
    model = _model()
    cases = [
        ((torch.tensor([0.0, 0.2, 0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), x, y), "t: .*unsorted at index 2"),
        ((torch.tensor([0.0, 0.1, 0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), x, y), "t: .*duplicated at index 2"),
        ((t, x, y.masked_fill(torch.rand(y.shape) < 0.1, float("nan"))), "y: observations contain NaN"),
        ((t, x.masked_fill(torch.rand(x.shape) < 0.1, float("inf")), y), "x: .*NaN or inf"),
        ((t, x[:, :5], y), r"x: expected shape \(N, 9, 1\)"),
        ((t, x, y[:3]), "y: 3 trajectories but x has 4"),
        ((t, x, y[..., :1]), r"y: expected shape \(N, 9, 2\)"),
        ((t, None, y), "x: the model expects inputs"),
        ((t.reshape(1, 3, 3), x, y), "t: expected a non-empty 1-D tensor"),
        ((t.expand(3, 9), x, y), "x: 4 trajectories but the per-trajectory times t have 3"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            model(*args)
    with pytest.raises(ValueError, match="mask: expected shape"):
        model(t, x, y, mask=torch.ones(4, 5, dtype=torch.bool))


def test_nan_allowed_where_masked():
    t, x, y = _data()
    mask = torch.ones(4, 9, dtype=torch.bool)
    mask[0, 3] = False
    y = y.clone()
    y[0, 3] = float("nan")
    tr = pyro.poutine.trace(_model()).get_trace(t, x, y, mask=mask)
    assert torch.isfinite(tr.log_prob_sum())


def test_pickle_model_and_guide(tmp_path):
    import pickle

    t, x, y = _data()
    model = _model(scale="learned")
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0))
    guide(t, x, y)
    clone = pickle.loads(pickle.dumps(guide))
    assert set(clone.state_dict()) == set(guide.state_dict())


def _pk_units():
    """Two units with their own (padded) times, boluses into compartment 0, a censored first observation."""
    t = torch.tensor([[0.5, 1.0, 2.0, 4.0], [0.25, 3.0, 0.0, 0.0]], dtype=torch.float64)
    t_mask = torch.tensor([[True] * 4, [True, True, False, False]])
    doses = DoseSchedule.from_lists([[0.0, 1.5], [0.0]], [[1.0, 0.5], [2.0]], dtype=torch.float64)
    y = torch.tensor([[0.8, 0.6, 0.7, 0.3], [1.9, 0.4, 0.0, 0.0]], dtype=torch.float64)[..., None]
    censored = torch.zeros(2, 4, dtype=torch.bool)
    censored[0, 3] = True  # reported "< 0.3"
    return t, t_mask, doses, y, censored


@pytest.mark.parametrize("error_model", ["additive", "proportional", "combined", "lognormal"])
def test_doses_per_unit_times_and_error_models_reach_the_likelihood(error_model):
    """The model's "obs" site is NODEObservation over solve_node with the trace's own weights."""
    t, t_mask, doses, y, censored = _pk_units()
    model = NODEModel(obs_dim=1, R_hidden=(4,), Z_hidden=None, scale=0.3, error_model=error_model, init="zero",
                      prop_scale=0.2 if error_model == "combined" else None)
    pyro.set_rng_seed(0)
    kwargs = {"t_mask": t_mask, "doses": doses, "censored": censored, "t0": 0.0}
    trace = pyro.poutine.trace(model).get_trace(t, None, y, **kwargs)
    params = {k: trace.nodes[k]["value"] for k in model.weight_shapes()}
    sol = solve_node(model.R, None, params, t, t_mask=t_mask, doses=doses, t0=0.0, obs_dim=1, solver=model.solver)
    torch.testing.assert_close(trace.nodes["y_mean"]["value"], sol.mean)
    obs = NODEObservation(sol.mean, 0.3, error_model, prop_scale=0.2, mask=t_mask[..., None],
                          censored=censored[..., None])
    torch.testing.assert_close(trace.nodes["obs"]["fn"].log_prob(y), obs.log_prob(y))
    y_pad = y.clone()
    y_pad[1, 2:] = 7.0  # padding is never observed
    torch.testing.assert_close(trace.nodes["obs"]["fn"].log_prob(y_pad), obs.log_prob(y))


def test_subsampled_plate_takes_the_units_rows_of_times_and_doses():
    from pyro_node_uq.infer.distributed import subsample_plate

    t, t_mask, doses, y, censored = _pk_units()
    # an adaptive solve: a fixed step on the union grid depends (to its discretisation error) on the other units
    model = NODEModel(obs_dim=1, R_hidden=(4,), Z_hidden=None, scale=0.3,
                      solver={"method": "dopri5", "rtol": 1e-10, "atol": 1e-10})
    pyro.set_rng_seed(0)
    full = pyro.poutine.trace(model).get_trace(t, None, y, t_mask=t_mask, doses=doses, censored=censored)
    params = {k: full.nodes[k]["value"] for k in model.weight_shapes()}
    with subsample_plate("trajectories", lambda size: torch.tensor([1])):
        sub = pyro.poutine.trace(pyro.poutine.condition(model, params)).get_trace(
            t, None, y, t_mask=t_mask, doses=doses, censored=censored)
    torch.testing.assert_close(sub.nodes["y_mean"]["value"][0], full.nodes["y_mean"]["value"][1])


def test_bad_error_model_options():
    with pytest.raises(ValueError, match="error_model"):
        NODEModel(obs_dim=1, error_model="poisson")
    with pytest.raises(ValueError, match="prop_scale: give it with error_model='combined'"):
        NODEModel(obs_dim=1, error_model="combined")
    with pytest.raises(ValueError, match="prop_scale must be a positive float"):
        NODEModel(obs_dim=1, error_model="combined", prop_scale="fixed")


def test_svi_and_parallel_predictive_with_doses_and_per_unit_times():
    t, t_mask, doses, y, censored = _pk_units()
    model = NODEModel(obs_dim=1, R_hidden=(4,), Z_hidden=None, scale="latent", error_model="lognormal")
    kwargs = {"t_mask": t_mask, "doses": doses, "censored": censored, "t0": 0.0}
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0), init_scale=0.01)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO(num_particles=4, vectorize_particles=True))
    losses = [svi.step(t, None, y, **kwargs) for _ in range(30)]
    assert all(map(torch.isfinite, map(torch.tensor, losses))) and losses[-1] < losses[0]
    pred = Predictive(model, guide=guide, num_samples=16, parallel=True)(t, None, None, num_trajectories=2,
                                                                         **kwargs)
    assert pred["obs"].shape == (16, 2, 4, 1) and (pred["obs"] > 0).all()  # log-normal: positive draws
    assert pred["y_mean"].shape == (16, 2, 4, 1)


@pytest.mark.parametrize("error_model,want", [
    ("additive", lambda f: torch.full_like(f, 0.3)), ("proportional", lambda f: 0.3 * f.abs()),
    ("combined", lambda f: torch.sqrt(0.09 + (0.2 * f) ** 2)), ("lognormal", lambda f: None)])
def test_noise_scale_follows_the_error_model(error_model, want):
    """Scoring's predictive NLL is a Normal around y_mean with this std: per entry for proportional errors."""
    model = NODEModel(obs_dim=1, scale=0.3, error_model=error_model,
                      prop_scale=0.2 if error_model == "combined" else None)
    f = torch.tensor([[[[0.5], [-2.0]]]], dtype=torch.float64)
    got, expected = model.noise_scale(None, {"y_mean": f}), want(f)
    if expected is None:
        assert got is None
    else:
        torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float64).expand_as(f), expected)


def test_with_latent_noise_makes_the_named_learned_scales_latent():
    model = NODEModel(obs_dim=1, scale="learned", error_model="combined", prop_scale="learned")
    assert model.learned_scales == ("sigma", "sigma_prop")
    latent = model.with_latent_noise({"sigma": 0.5})
    assert (latent.scale, latent.scale_prior, latent.prop_scale) == ("latent", 0.5, "learned")
    assert (model.scale, model.learned_scales) == ("learned", ("sigma", "sigma_prop"))  # the original is unchanged
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    trace = pyro.poutine.trace(latent).get_trace(t, num_trajectories=2)
    assert trace.nodes["sigma"]["type"] == "sample" and trace.nodes["sigma"]["fn"].base_dist.scale.item() == 0.5
    with pytest.raises(ValueError, match="'sigma' is not a learned noise scale"):
        NODEModel(obs_dim=1, scale=0.1).with_latent_noise({"sigma": 1.0})
    with pytest.raises(ValueError, match=r"prior_scales\['sigma'\]"):
        model.with_latent_noise({"sigma": 0.0})


def test_predict_args_keep_doses_and_times_but_free_the_observations():
    from types import SimpleNamespace

    t, t_mask, doses, y, censored = _pk_units()
    fields = {"t": t, "x": None, "y": y, "kwargs": {"mask": t_mask, "censored": censored, "t_mask": t_mask, "doses": doses}}
    split = type("Split", (SimpleNamespace,), {"__len__": lambda self: 2})(**fields)
    args, kwargs = NODEModel(obs_dim=1).predict_args(split)
    assert args[2] is None and set(kwargs) == {"num_trajectories", "t_mask", "doses"}
    assert kwargs["doses"] is doses and kwargs["num_trajectories"] == 2


def test_one_dose_schedule_is_shared_by_every_trajectory():
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    doses = DoseSchedule.from_lists([[0.0, 1.0]], [[1.0, 1.0]], dtype=torch.float64)
    model = NODEModel(obs_dim=1, R_hidden=(4,), Z_hidden=None, scale=0.1)
    pyro.set_rng_seed(0)
    trace = pyro.poutine.trace(model).get_trace(t, num_trajectories=3, doses=doses)
    mean = trace.nodes["y_mean"]["value"]
    assert trace.nodes["obs"]["value"].shape == (3, 5, 1) and mean.shape[-3:] == (3, 5, 1)
    assert torch.equal(mean[..., 0, :, :], mean[..., 2, :, :]) and float(mean[..., 0, 0, 0]) == 1.0  # dose at t0


def test_data_are_checked_once_per_tensor_version_and_the_cache_is_not_pickled(monkeypatch):
    """NUTS and SVI call the model on the same tensors thousands of times: the data check runs once, again after
    an in-place change, and the cache never travels with a pickled model."""
    import pickle

    from pyro_node_uq.models import node

    problem = load_problem("chemical", num_train=2, num_times=5)
    model, tr = problem.default_model(R_hidden=(4,)), problem.train
    calls = []
    real = node.check_trajectory_data
    monkeypatch.setattr(node, "check_trajectory_data", lambda *a, **k: calls.append(1) or real(*a, **k))
    model(tr.t, tr.x, tr.y)
    model(tr.t, tr.x, tr.y)
    assert len(calls) == 1
    y = tr.y.clone()
    y[0, 0, 0] = float("nan")  # an in-place change is checked again
    model(tr.t, tr.x, tr.y.clone())
    with pytest.raises(ValueError, match="y: observations contain NaN"):
        model(tr.t, tr.x, y)
    assert "_validated" not in pickle.loads(pickle.dumps(model)).__dict__


def test_the_proportional_coefficient_has_its_own_unitless_prior_and_initial_value():
    """A latent proportional coefficient had the additive scale's prior, in the outputs' units: with outputs near
    80 (``scale_prior`` 8) its prior median was a coefficient of variation of 5.4, and short fits started there."""
    t = torch.linspace(0.1, 1.0, 5)
    y = torch.ones(2, 5, 1)
    model = NODEModel(obs_dim=1, R_hidden=(3,), scale="latent", scale_prior=8.0, error_model="combined",
                      prop_scale="latent", prop_scale_prior=0.3)
    tr = pyro.poutine.trace(model).get_trace(t, None, y)
    assert tr.nodes["sigma"]["fn"].base_dist.scale.tolist() == [8.0]
    assert tr.nodes["sigma_prop"]["fn"].base_dist.scale.tolist() == [0.3]
    pyro.clear_param_store()
    learned = NODEModel(obs_dim=1, R_hidden=(3,), scale="learned", scale_init=5.0, error_model="combined",
                        prop_scale="learned", prop_scale_init=0.2)
    pyro.poutine.trace(learned).get_trace(t, None, y)
    assert pyro.param("sigma").item() == pytest.approx(5.0) and pyro.param("sigma_prop").item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="prop_scale_prior"):
        NODEModel(obs_dim=1, prop_scale_prior=0.0)
