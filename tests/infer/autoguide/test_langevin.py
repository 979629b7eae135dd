import pickle
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal

from pyro_node_uq.infer import AutoLangevin

from .conjugate import BayesLinReg, mean_and_se, per_particle_elbo

MODES = ["learned", "exact", "hybrid"]


def _randomise(guide, gen):
    """Random (untrained) parameters: the bound must hold for any of them."""
    with torch.no_grad():
        for name, p in guide.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("reference", ["diagonal", "lowrank", "full"])
def test_untrained_learned_guide_is_its_reference(reference):
    model = BayesLinReg(d=3, n=8)
    guide = AutoLangevin(model, num_steps=6, score="learned", reference=reference, init_scale=0.5)
    guide(model.y)
    with torch.no_grad():
        if reference == "lowrank":
            guide.cov_factor.normal_(0, 0.3)
        if reference == "full":
            guide.scale_tril = torch.eye(3) + torch.randn(3, 3).tril(-1) * 0.5
            cov = guide.reference_law().distribution().covariance_matrix
        else:
            cov = torch.diag(guide.scale**2) + (guide.factor @ guide.factor.T if reference == "lowrank" else 0)
    z = guide.sample_ensemble(40000, model.y)["w"]
    assert guide.stats["mean_path_kl"] == 0.0  # zero-initialised score net: no drift, no path KL
    assert abs(guide.stats["spread_ratio"] - 1) < 0.02  # the members spread exactly as r
    se = (torch.diagonal(cov) / 40000).sqrt()
    assert ((z.mean(0) - guide.loc).abs() < 4 * se).all()
    assert torch.allclose(torch.cov(z.T), cov, atol=0.02)


@pytest.mark.parametrize("reference", ["diagonal", "lowrank", "full"])
@pytest.mark.parametrize("score", MODES)
def test_path_elbo_is_a_lower_bound_for_random_parameters(score, reference):
    """Mean of ELBO_path over 10^4 particles stays below log p(x) + 3 standard errors."""
    model = BayesLinReg(d=4, n=12, seed=1)
    guide = AutoLangevin(model, num_steps=5, score=score, reference=reference, init_scale=0.3,
                         score_net_kwargs={"hidden": 16})
    guide(model.y)
    _randomise(guide, torch.Generator().manual_seed(2))
    elbo, se = mean_and_se(per_particle_elbo(model, guide, 10000, model.y))
    assert elbo < model.log_evidence + 3 * se, (elbo, se, model.log_evidence)
    assert elbo > model.log_evidence - 1e4  # a finite, sensible estimate


def test_exact_score_equals_the_closed_form_gradient():
    model = BayesLinReg(d=3, n=8)
    guide = AutoLangevin(model, num_steps=2, score="exact")
    guide(model.y)
    z = torch.randn(5, 1, 3)
    grad, ok = guide.exact_score(z)
    assert ok.all()
    resid = model.y - (z * model.X).sum(-1)
    expected = -z / model.prior_scale**2 + (resid.unsqueeze(-1) * model.X).sum(-2, keepdim=True) / model.sigma**2
    assert torch.allclose(grad, expected, atol=1e-10)


@pytest.mark.parametrize("score", MODES)
def test_training_improves_on_the_autonormal_start(score):
    model = BayesLinReg(d=4, n=20, rho=0.8, seed=3)
    an = AutoNormal(model, init_scale=0.1)
    elbo = Trace_ELBO(num_particles=16, vectorize_particles=True)
    svi = SVI(model, an, pyro.optim.Adam({"lr": 0.03}), elbo)
    for _ in range(600):
        svi.step(model.y)
    start, _ = mean_and_se(per_particle_elbo(model, an, 4000, model.y))
    guide = AutoLangevin(model, num_steps=6, score=score, init_from=an)
    guide(model.y)
    assert torch.allclose(guide.loc, an.locs.w) and torch.allclose(guide.scale, an.scales.w)
    untrained, _ = mean_and_se(per_particle_elbo(model, guide, 4000, model.y))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), elbo)
    for _ in range(300):
        svi.step(model.y)
    trained, se = mean_and_se(per_particle_elbo(model, guide, 4000, model.y))
    assert trained > start + 0.2, (start, untrained, trained)
    assert trained < model.log_evidence + 3 * se


def test_init_from_lowrank_guide():
    model = BayesLinReg(d=4, n=10)
    lr = AutoLowRankMultivariateNormal(model, rank=2)
    lr(model.y)
    guide = AutoLangevin(model, reference="lowrank", rank=2, init_from=lr)
    guide(model.y)
    cov_lr = lr.get_posterior().covariance_matrix
    cov = guide.factor @ guide.factor.T + torch.diag(guide.scale**2)
    assert torch.allclose(cov, cov_lr) and torch.allclose(guide.loc, lr.loc)
    diag = AutoLangevin(model, reference="diagonal", init_from=lr)
    diag(model.y)
    assert torch.allclose(diag.scale**2, torch.diagonal(cov_lr))
    full = AutoLangevin(model, init_from=lr)  # the default reference at this size: full rank, the same covariance
    full(model.y)
    assert full.reference == "full"
    assert torch.allclose(full.reference_law().distribution().covariance_matrix, cov_lr)


def _positive_model(y):
    loc = pyro.sample("loc", dist.Normal(0.0, 2.0))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 0.5))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Normal(loc, scale), obs=y)


def test_median_quantiles_ensemble_predictive_pickle():
    y = torch.randn(30) * 2 + 1
    guide = AutoLangevin(_positive_model, num_steps=4, score="hybrid", num_quantile_samples=4000)
    svi = SVI(_positive_model, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO(8, vectorize_particles=True))
    for _ in range(200):
        svi.step(y)
    med = guide.median(y)
    q = guide.quantiles([0.05, 0.5, 0.95], y)
    assert set(med) == {"loc", "scale"} and q["scale"].shape == (3,)
    assert (q["scale"] > 0).all() and q["loc"][0] < med["loc"] < q["loc"][2]
    assert abs(float(q["loc"][1] - med["loc"])) < 0.05
    ens = guide.sample_ensemble(500, y)
    assert ens["loc"].shape == (500,) and (ens["scale"] > 0).all()
    pred = Predictive(_positive_model, guide=guide, num_samples=50, parallel=True)(y)
    assert pred["obs"].shape == (50, 30) and pred["scale"].shape[0] == 50
    clone = pickle.loads(pickle.dumps(guide))
    state = guide.state_dict()
    assert set(clone.state_dict()) == set(state)
    for k, v in clone.state_dict().items():
        assert torch.equal(v, state[k])
    pyro.set_rng_seed(5)
    a = guide.sample_ensemble(10, y)["loc"]
    pyro.set_rng_seed(5)
    b = clone.sample_ensemble(10, y)["loc"]
    assert torch.allclose(a, b)


def test_node_model_vectorised_training_and_predictive():
    from pyro_node_uq.data import load_problem

    problem = load_problem("chemical", num_train=3, num_test=2, num_times=11)
    model = problem.default_model(R_hidden=(6,))
    guide = AutoLangevin(model, num_steps=3, score="hybrid", init_loc_fn=model.init_loc_fn(0), init_scale=0.01)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO(num_particles=4, vectorize_particles=True))
    losses = [svi.step(*problem.train.args) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    test = problem.test
    pred = Predictive(model, guide=guide, num_samples=6, parallel=True, return_sites=["y_mean"])(test.t, test.x)
    assert pred["y_mean"].shape == (6, 2, 11, 2)
    z = torch.randn(7, guide.latent_dim)
    assert guide.score(z).shape == (7, guide.latent_dim) and guide.reference_scale.shape == (guide.latent_dim,)


class _NaNGradientBelowZero(torch.autograd.Function):
    """Zero in value, NaN in gradient for negative inputs: a stand-in for a solve that blows up in backward."""

    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.zeros_like(w)

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return torch.where(w < 0, torch.full_like(w, float("nan")), torch.zeros_like(w)) * grad


def test_non_finite_exact_drift_is_reported_not_propagated():
    def model(y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        pyro.factor("f", _NaNGradientBelowZero.apply(w))

    guide = AutoLangevin(model, num_steps=3, score="exact", init_scale=1.0)
    with pytest.warns(RuntimeWarning, match="non-finite drifts"):  # the first draw (seeded) starts below zero
        guide(torch.zeros(1))
    with pytest.warns(RuntimeWarning, match="non-finite drifts"):
        z = guide.sample_ensemble(200, torch.zeros(1))["w"]
    assert torch.isfinite(z).all() and guide.stats["nonfinite_drifts"] > 0


def test_overflowing_drift_norm_gives_a_finite_path_kl():
    def model():
        w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.factor("f", 1e200 * w.sum(-1))  # a finite gradient whose squared norm overflows to inf

    guide = AutoLangevin(model, num_steps=2, score="hybrid", exact_weight_init=1.0, init_scale=1.0)
    guide._setup_prototype()
    z, _log_r, pkl, _ = guide.run_chain(torch.Size([5]))  # capped, then clipped: no overflow, no NaN
    assert torch.isfinite(pkl).all() and torch.isfinite(z).all() and guide.stats["clipped_fraction"] == 1.0


def test_exact_drift_survives_diverging_node_solves():
    from pyro_node_uq.data import load_problem

    problem = load_problem("chemical", num_train=2, num_times=11)
    model = problem.default_model(R_hidden=(4,))  # on_divergence="raise"
    guide = AutoLangevin(model, num_steps=2, score="exact", init_loc_fn=model.init_loc_fn(0), init_scale=0.01)
    guide(*problem.train.args)
    z = guide.loc.detach().expand(3, 1, guide.latent_dim).clone()
    z[0] = 1e5  # weights this large blow the solve up (|h| > 1e6)
    grad, ok = guide.exact_score(z)
    assert ok.tolist() == [[False], [True], [True]]
    assert (grad[0] == 0).all() and torch.isfinite(grad[1:]).all() and (grad[1:] != 0).any()
    with torch.no_grad():
        guide.scale = torch.full_like(guide.scale, 1e5)  # a reference so wide that some chain states diverge
    with pytest.warns(RuntimeWarning, match="non-finite drifts"):
        guide.sample_ensemble(16, *problem.train.args)
    assert guide.stats["nonfinite_drifts"] > 0
    # the rejected members must not leak NaN into the guide's gradients (0 * NaN through torch.where)
    with torch.no_grad():
        guide.scale = torch.full_like(guide.scale, 1e4)  # some chain states diverge, some do not
    pyro.set_rng_seed(1)
    with pytest.warns(RuntimeWarning, match="non-finite drifts"):
        z, log_r, pkl, _ = guide.run_chain(torch.Size([16, 1]))
    assert 0 < guide.stats["nonfinite_drifts"] < 32
    (z.sum() + log_r.sum() + pkl.sum()).backward()
    for name, p in guide.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_huge_finite_exact_gradients_do_not_poison_the_parameter_gradients():
    def model():
        w = pyro.sample("w", dist.Normal(torch.zeros(3, dtype=torch.float32), 1.0).to_event(1))
        pyro.factor("f", 1e37 * w.sum(-1))  # finite in float32, but S times it is not

    guide = AutoLangevin(model, num_steps=3, score="hybrid", exact_weight_init=1.0, init_scale=10.0)
    guide._setup_prototype()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # once w has moved, log p itself overflows: rejected
        z, log_r, pkl, _ = guide.run_chain(torch.Size([4]))
    (z.sum() + log_r.sum() + pkl.sum()).backward()
    stats = guide.stats
    assert torch.isfinite(z).all() and torch.isfinite(pkl).all()
    assert stats["clipped_fraction"] * 12 + stats["nonfinite_drifts"] == 12  # every step clipped or rejected
    for name, p in guide.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kwargs,match", [
    ({"score": "magic"}, "score must be one of"),
    ({"reference": "dense"}, "reference must be"),
    ({"num_steps": 0}, "num_steps must be a positive int"),
    ({"step_size": -0.1}, "step_size must be positive"),
    ({"init_scale": 0.0}, "init_scale must be positive"),
    ({"rank": 0}, "rank must be a positive int"),
    ({"exact_weight_init": 0.0}, "exact_weight_init must be positive"),
    ({"num_quantile_samples": 0}, "num_quantile_samples must be an int >= 2"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoLangevin(_positive_model, **kwargs)


def test_bad_init_from_and_score_net():
    with pytest.raises(TypeError, match="init_from must be a fitted AutoNormal"):
        AutoLangevin(_positive_model, init_from=object())
    guide = AutoLangevin(_positive_model, score_net="transformer")
    with pytest.raises(ValueError, match="score_net must be 'mlp', 'per_site'"):
        guide(torch.randn(5))
    exact = AutoLangevin(_positive_model, score="exact")
    exact(torch.randn(5))
    with pytest.raises(ValueError, match="no learned score"):
        exact.score(torch.zeros(2))
    with pytest.raises(NotImplementedError, match="no closed form"):
        exact.get_posterior()


def test_bare_method_result_and_converter_use_the_guides_own_data():
    """``MethodResult(name, model, guide)`` (no split recorded, as the tutorial writes it) and
    ``to_inference_data(guide, test_split)`` run a hybrid guide on the data it was fitted on: no ``TypeError`` for
    missing model arguments, and the test split's observations never reach its drift."""
    from dataclasses import replace

    from pyro_node_uq.data import load_problem
    from pyro_node_uq.diagnostics import to_inference_data
    from pyro_node_uq.methods import MethodResult

    problem = load_problem("chemical", num_train=3, num_test=2, num_times=11)
    model = problem.default_model(R_hidden=(4,))
    guide = AutoLangevin(model, num_steps=2, score="hybrid", init_loc_fn=model.init_loc_fn(0), init_scale=0.01)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO(num_particles=2, vectorize_particles=True))
    svi.step(*problem.train.args, **problem.train.kwargs)
    bare = MethodResult("langevin", model, guide)
    assert bare.predict(problem.test, num_samples=4)["y_mean"].shape == (4, 2, 11, 2)
    test, shifted = problem.test, replace(problem.test, y=problem.test.y + 5.0)
    a = to_inference_data(guide, test, model=model, num_samples=8, num_chains=2, seed=1).posterior
    b = to_inference_data(guide, shifted, model=model, num_samples=8, num_chains=2, seed=1).posterior
    assert all((a[k].values == b[k].values).all() for k in a.data_vars)


class _Contract(torch.nn.Module):
    """A score net that pulls every member onto the reference mean within a step (a collapsing drift)."""

    def forward(self, u, tau):
        return -99.5 * u


def test_collapsing_ensemble_is_reported_and_warned_once():
    model = BayesLinReg(d=3, n=8)
    guide = AutoLangevin(model, score_net=_Contract(), step_size=0.01, learn_step_size=False)
    guide(model.y)
    with pytest.warns(RuntimeWarning, match="collapsed toward its mean"):
        guide.sample_ensemble(64, model.y)
    assert guide.stats["spread_ratio"] < 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guide.sample_ensemble(64, model.y)  # warned once
    guide.sample_ensemble(4, model.y)
    assert guide.stats["spread_ratio"] is None  # too few members to judge


def _grouped_model():
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("groups", 3):
        pyro.sample("theta", dist.Normal(mu, 1.0))


def test_the_plate_nesting_of_the_latents_is_read_once_at_set_up_and_pickled():
    """Members of latents inside a plate keep their plate dim: ``(P, 3)``; the nesting is found when the prototype
    is traced (one pass over its sites in a draw: Pyro's own unpacking), and survives pickling."""
    guide = AutoLangevin(_grouped_model, num_steps=2)
    guide()
    assert guide._latent_nesting == 1
    trace, passes = guide.prototype_trace, []
    iterate = trace.iter_stochastic_nodes

    def counted():
        passes.append(1)
        return iterate()

    trace.iter_stochastic_nodes = counted
    draws = guide.sample_ensemble(4)
    assert draws["theta"].shape == (4, 3) and draws["mu"].shape == (4,) and len(passes) == 1
    del trace.iter_stochastic_nodes
    copy = pickle.loads(pickle.dumps(guide))
    assert copy._latent_nesting == 1 and copy.sample_ensemble(2)["theta"].shape == (2, 3)
    assert {k: v.shape for k, v in copy.median().items()} == {"mu": torch.Size([]), "theta": torch.Size([3])}


def _stiff_fit(model, lr_scales, num_steps=50):
    """A guide started at the exact posterior mean of a stiff posterior (sd 4e-4 to 4e-3), fitted with ``fit_svi``
    at lr 0.01; returns ``(ELBO at the start, ELBO at the end, per-step losses)``."""
    from types import SimpleNamespace

    from pyro.infer.autoguide.initialization import init_to_value

    from pyro_node_uq.infer import fit_svi

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoLangevin(model, num_steps=4, init_scale=1e-3, init_loc_fn=init_to_value(values={"w": model.post_mean}))
    guide(model.y)
    start, _ = mean_and_se(per_particle_elbo(model, guide, 2000, model.y))
    scales = guide.warm_start_lr_scales() if lr_scales else None
    fit = fit_svi(model, guide, SimpleNamespace(args=(model.y,), kwargs={}), num_steps=num_steps, lr=1e-2,
                  loss=Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1),
                  progress_bar=False, lr_scales=scales)
    end, _ = mean_and_se(per_particle_elbo(model, guide, 2000, model.y))
    return start, end, fit.losses


def test_a_warm_started_stiff_fit_improves_from_its_start_with_its_lr_scales():
    """Adam's first steps move every coordinate by about lr (0.01), far more than the posterior's width: a plain
    fit from the posterior mean climbs (its loss rises to thousands of nats above the start's) and 50 steps end
    below the start's ELBO; with :meth:`warm_start_lr_scales` no step's 8-particle loss is more than 10 nats above
    the start's -ELBO and the fit ends more than one nat above it (2000-particle ELBO, standard error < 0.1)."""
    model = BayesLinReg(d=8, n=100, rho=0.9, sigma=0.01, seed=1)
    start, end, losses = _stiff_fit(model, lr_scales=True)
    assert max(losses) < -start + 10, (start, max(losses))
    assert end > start + 1, (start, end)
    start, end, losses = _stiff_fit(model, lr_scales=False)  # the failure mode the scales remove
    assert max(losses) > -start + 100 and end < start + 1, (start, end, max(losses))


def test_warm_start_lr_scales_name_the_reference_parameters():
    pyro.clear_param_store()
    model = BayesLinReg(d=9, n=10)
    guide = AutoLangevin(model, init_scale=0.02)
    with pytest.raises(RuntimeError, match="call it once with the model's arguments"):
        guide.warm_start_lr_scales()
    guide(model.y)
    scales = guide.warm_start_lr_scales()
    assert scales == {"AutoLangevin.loc": pytest.approx(0.02), "AutoLangevin.scale_tril": pytest.approx(1 / 3)}
    assert set(scales) <= set(pyro.get_param_store().keys())
    pyro.clear_param_store()
    diag = AutoLangevin(model, reference="diagonal", init_scale=0.05)
    diag(model.y)
    assert diag.warm_start_lr_scales() == {"AutoLangevin.loc": pytest.approx(0.05)}
