"""HierarchicalNODEModel: the true vector field reproduces the closed form; random effects in the units' plate."""
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.data.pk import K_ELIM, pk_closed_form
from pyro_node_uq.models import HierarchicalNODEModel
from pyro_node_uq.utils.seeding import param_scope

D64 = torch.float64


@pytest.fixture(scope="module")
def problem():
    return load_problem("pk_repeated", num_units=8, dtype=D64)


def test_true_vector_field_reproduces_closed_form(problem):
    """R linear with weight -k and the true effects: the model's mean is the closed form to 1e-6."""
    split = problem.train
    model = HierarchicalNODEModel(hidden_dim=1, R_hidden=(), Z_hidden=None, omega_init=0.25,
                                  solver={"method": "rk4", "substeps": 40})
    truth = {"R.0.weight": torch.tensor([[-K_ELIM]], dtype=D64), "R.0.bias": torch.zeros(1, dtype=D64),
             "eta_z": split.eta_true / 0.25}
    trace = poutine.trace(poutine.condition(model, truth)).get_trace(*split.args, **split.kwargs)
    expected = pk_closed_form(split.t, split.doses, K_ELIM * split.eta_true[:, 0].exp(), split.eta_true[:, 1].exp())
    assert (trace.nodes["y_mean"]["value"][..., 0] - expected).abs().max() < 1e-6
    assert torch.allclose(trace.nodes["eta"]["value"], split.eta_true)


def test_each_unit_gets_its_own_doses(problem):
    """Predicting held-out units together equals predicting one alone: doses and effects follow their unit."""
    model, test = problem.default_model(), problem.test
    args, kwargs = model.predict_args(test)
    tr = poutine.trace(model).get_trace(*args, **kwargs)
    values = {k: v["value"] for k, v in tr.nodes.items() if v["type"] == "sample" and not v["is_observed"]
              and k != "trajectories"}  # the plate's indices belong to the 2-unit call
    one = test.select(torch.tensor([1]))
    values["eta_z_new"] = values["eta_z_new"][1:]
    args1, kwargs1 = model.predict_args(one)
    tr1 = poutine.trace(poutine.condition(model, values)).get_trace(*args1, **kwargs1)
    assert torch.allclose(tr1.nodes["y_mean"]["value"][0], tr.nodes["y_mean"]["value"][1], atol=1e-10)
    assert not torch.allclose(tr.nodes["y_mean"]["value"][0], tr.nodes["y_mean"]["value"][1])


def test_vectorised_particles_and_plate_shapes(problem):
    model, split = problem.default_model(), problem.train
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn())
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, *split.args, **split.kwargs)
    assert torch.isfinite(loss)
    with pyro.plate("particles", 3, dim=-2):
        tr = poutine.trace(poutine.replay(model, poutine.trace(guide).get_trace(*split.args, **split.kwargs))
                           ).get_trace(*split.args, **split.kwargs)
    assert tr.nodes["eta_z"]["value"].shape == (3, len(split), 2)
    assert tr.nodes["y_mean"]["value"].shape == (3, len(split), len(split.t), 1)


def test_new_units_population_only_and_covariates(problem):
    model, test = problem.default_model(), problem.test
    tr = poutine.trace(model).get_trace(*test.args, **test.kwargs)
    assert "eta_z_new" in tr.nodes and "eta_z" not in tr.nodes  # new units never reuse fitted units' effects
    pop = problem.default_model(effects=())
    tr = poutine.trace(pop).get_trace(*test.args, **test.kwargs)
    assert not any(k.startswith(("eta", "omega")) for k in tr.nodes)
    cov = problem.default_model(covariate_dim=1)
    with pytest.raises(ValueError, match=r"covariates: the model expects \(1,\) covariates per unit"):
        cov(*test.args, **test.kwargs)
    with pytest.raises(ValueError, match="effects"):
        HierarchicalNODEModel(effects=("clearance",))


def test_covariates_shift_the_effects_mean(problem):
    test = problem.test
    model = problem.default_model(covariate_dim=1, omega="latent")
    c = torch.tensor([[1.0], [-1.0]], dtype=D64)
    beta = torch.tensor([[0.5], [0.0]], dtype=D64)
    data = {"beta": beta, "eta_z_new": torch.zeros(2, 2, dtype=D64), "omega": torch.ones(2, dtype=D64)}
    tr = poutine.trace(poutine.condition(model, data)).get_trace(*test.args, **dict(test.kwargs, covariates=c))
    assert tr.nodes["eta_new"]["value"].tolist() == [[0.5, 0.0], [-0.5, 0.0]]


def test_inference_data_keeps_the_unit_dimension(problem):
    from pyro_node_uq.diagnostics import to_inference_data
    from pyro_node_uq.methods import run_autonormal, run_map

    model = problem.default_model()
    fit = run_map(model, problem.train, num_steps=2, progress_bar=False)
    fit = run_autonormal(model, problem.train, warm_start=fit, num_steps=2, progress_bar=False, elbo_particles=0)
    idata = to_inference_data(fit, problem.train, num_samples=8, num_chains=2)
    for name in ("eta_z", "eta"):
        assert idata.posterior[name].dims == ("chain", "draw", "trajectory", f"{name}_dim_0")
    assert idata.posterior["eta"].coords["trajectory"].values.tolist() == problem.train.ids.tolist()


def test_fits_start_without_dynamics(problem):
    """R's last layer starts at zero (a random fast field is a mode MAP does not leave: eta recovery failed)."""
    init = problem.default_model().init_loc_fn(3)
    assert not init.values["R.1.weight"].any() and not init.values["R.1.bias"].any()
    assert init.values["R.0.weight"].abs().sum() > 0


def test_centred_effects_are_the_latent_and_reach_the_likelihood(problem):
    """``parameterization="centred"``: ``eta`` ~ Normal(0, omega) is the fitted units' latent; its log density is
    the non-centred one at ``eta_z = eta / omega`` minus ``log omega`` per component (the change of variables), and
    the effects move the likelihood; new units stay non-centred."""
    split = problem.train
    cen = problem.default_model(parameterization="centred", omega="latent")
    non = problem.default_model(omega="latent")
    omega = torch.tensor([0.3, 0.2], dtype=D64)
    eta = split.eta_true
    tr = poutine.trace(cen).get_trace(*split.args, **split.kwargs)
    assert "eta" in tr.nodes and tr.nodes["eta"]["type"] == "sample" and "eta_z" not in tr.nodes
    assert cen.layer_sites("random_effects") == ["eta", "omega"] and cen.per_unit_sites()[0] == "eta"
    weights = {k: v["value"] for k, v in tr.nodes.items() if k.startswith("R.")}
    tc = poutine.trace(poutine.condition(cen, {**weights, "omega": omega, "eta": eta})).get_trace(
        *split.args, **split.kwargs)
    tn = poutine.trace(poutine.condition(non, {**weights, "omega": omega, "eta_z": eta / omega})).get_trace(
        *split.args, **split.kwargs)
    tc.compute_log_prob(), tn.compute_log_prob()
    jacobian = len(split) * omega.log().sum()
    assert torch.allclose(tc.nodes["eta"]["log_prob_sum"], tn.nodes["eta_z"]["log_prob_sum"] - jacobian)
    assert torch.allclose(tc.nodes["obs"]["log_prob_sum"], tn.nodes["obs"]["log_prob_sum"])
    moved = poutine.trace(poutine.condition(cen, {**weights, "omega": omega, "eta": eta + 0.5})).get_trace(
        *split.args, **split.kwargs)
    moved.compute_log_prob()
    assert not torch.allclose(moved.nodes["obs"]["log_prob_sum"], tc.nodes["obs"]["log_prob_sum"])
    new = poutine.trace(cen).get_trace(*problem.test.args, **problem.test.kwargs)
    assert new.nodes["eta_z_new"]["type"] == "sample" and new.nodes["eta_new"]["type"] == "sample"
    assert new.nodes["eta_new"]["infer"].get("_deterministic")
    with pytest.raises(ValueError, match="parameterization"):
        HierarchicalNODEModel(parameterization="centered")


def test_random_effects_block_holds_their_latent_population_parameters(problem):
    """``layer_sites("random_effects")``: the fitted units' latent, plus omega where it is latent and beta where
    covariates shift the effects (a guide over the block sees how the effects and their spread trade off)."""
    assert problem.default_model().layer_sites("random_effects") == ["eta_z"]
    assert problem.default_model(parameterization="centred").layer_sites("random_effects") == ["eta"]
    assert problem.default_model(omega="latent").layer_sites("random_effects") == ["eta_z", "omega"]
    theo = load_problem("theophylline_events", dtype=D64)
    assert theo.default_model(omega="latent").layer_sites("random_effects") == ["eta_z", "omega", "beta"]
    assert problem.default_model().layer_sites("last_layer") == ["R.1.weight", "R.1.bias"]
    with pytest.raises(ValueError, match="HierarchicalNODEModel"):
        load_problem("chemical", num_train=2).default_model().layer_sites("random_effects")


def test_centred_map_does_not_inflate_omega():
    """MAP of a non-centred model climbs the ridge ``eta_z = eta / omega`` to a large omega (only omega's prior
    stops it); the centred joint density has the ``-N log omega`` term, so MAP's omega lands near the spread of
    the true effects."""
    from pyro_node_uq.methods import run_map
    problem = load_problem("pk_repeated", num_units=24, dtype=D64)
    fixed = {"R.0.weight": torch.tensor([[-K_ELIM]], dtype=D64), "R.0.bias": torch.zeros(1, dtype=D64)}
    spread = problem.train.eta_true.pow(2).mean(0).sqrt()
    omegas = {}
    for par in ("noncentred", "centred"):
        model = poutine.condition(HierarchicalNODEModel(hidden_dim=1, R_hidden=(), Z_hidden=None, scale=0.1,
                                                        parameterization=par, solver={"method": "rk4"}), fixed)
        fit = run_map(model, problem.train, num_steps=300, lr=0.05, progress_bar=False)
        with param_scope(fit.param_state):
            omegas[par] = pyro.param("omega").detach()
    assert ((omegas["centred"] - spread).abs() < 0.3 * spread).all(), (omegas, spread)
    assert (omegas["noncentred"] > 1.5 * spread).all(), (omegas, spread)


def test_per_state_rate_effects_scale_their_own_derivative():
    """``"rate[k]"`` scales the derivative of hidden component ``k`` only: the same solve as a population model
    whose R rows are multiplied by ``exp(eta_rate + eta_rate[k])`` per unit."""
    problem = load_problem("theophylline_events", dtype=D64)
    split = problem.train.select(torch.arange(3), covariates=None)  # models without a covariate model
    kw = {"hidden_dim": 2, "R_hidden": (), "Z_hidden": None, "scale": 0.5, "solver": {"method": "rk4"}}
    model = HierarchicalNODEModel(effects=("rate", "rate[0]", "rate[1]"), omega="latent", **kw)
    pop = HierarchicalNODEModel(effects=(), **kw)
    w = torch.tensor([[-0.2, 1.0], [0.0, -1.0]], dtype=D64)
    b = torch.tensor([0.01, 0.02], dtype=D64)
    eta = torch.tensor([[0.1, -0.5, 0.4], [0.0, 0.3, 0.0], [-0.2, 0.0, -0.6]], dtype=D64)
    data = {"R.0.weight": w, "R.0.bias": b, "omega": torch.ones(3, dtype=D64), "eta_z": eta}
    got = poutine.trace(poutine.condition(model, data)).get_trace(*split.args, **split.kwargs)
    factor = torch.stack([eta[:, 0] + eta[:, 1], eta[:, 0] + eta[:, 2]], -1).exp()  # (N, hidden)
    for i in range(len(split)):
        one = split.select(torch.tensor([i]))
        scaled = {"R.0.weight": w * factor[i][:, None], "R.0.bias": b * factor[i]}
        want = poutine.trace(poutine.condition(pop, scaled)).get_trace(*one.args, **one.kwargs)
        assert torch.allclose(got.nodes["hidden"]["value"][i], want.nodes["hidden"]["value"][0], atol=1e-10)
    assert not torch.allclose(got.nodes["hidden"]["value"][1, :, 1], got.nodes["hidden"]["value"][0, :, 1])
    with pytest.raises(ValueError, match=r"0 <= k < hidden_dim=2"):
        HierarchicalNODEModel(effects=("rate[2]",), **kw)


@pytest.mark.parametrize("name,options", [("pk_repeated", {}),
                                          ("theophylline_events", {"parameterization": "centred", "omega": "latent"})])
def test_warm_start_moves_the_rate_effects_mean_into_the_network(name, options, monkeypatch):
    """``warm_start_values``: the units' mean rate effect (their mean deviation from ``B c_i``) goes into R's
    last layer, and omega becomes the effects' spread, both along exact symmetries of the likelihood: the
    likelihood is unchanged to rounding, the effects' prior rises, the output effect is left alone.  (On the
    MAP's raw point: ``run_map`` itself ends with this move, :func:`~pyro_node_uq.methods.map.settle_point`.)"""
    from pyro_node_uq.methods import run_map
    monkeypatch.setattr("pyro_node_uq.methods.map.settle_point", lambda result: result)
    problem = load_problem(name, dtype=D64)
    model = problem.default_model(**options)
    split = problem.train
    fit = run_map(model, split, num_steps=30, progress_bar=False)
    with param_scope(fit.param_state):
        before = {k: v.detach() for k, v in fit.guide.median().items()}
        after = model.warm_start_values(before, split)
        traces = [poutine.trace(poutine.condition(model, before)).get_trace(*split.args, **split.kwargs)]
        if model.omega == "learned":  # returned for the next fit's param store
            pyro.get_param_store()["omega"] = after["omega"]
        traces.append(poutine.trace(poutine.condition(model, after)).get_trace(*split.args, **split.kwargs))
    for tr in traces:
        tr.compute_log_prob()
    obs = [tr.nodes["obs"]["log_prob_sum"] for tr in traces]
    assert torch.allclose(obs[0], obs[1], rtol=1e-12), obs
    rate, output = model.effects.index("rate"), model.effects.index("output")
    eta = [tr.nodes["eta"]["value"] for tr in traces]
    beta = {"beta": after["beta"]} if "beta" in after else {}
    loc = poutine.condition(model._eta_loc, beta)(split.covariates, eta[0])  # B c_i (0 without covariates)
    omega = [before["omega"] if "omega" in before else _learned_omega(fit), after["omega"]]
    prior = [torch.distributions.Normal(loc, w).log_prob(e).sum() for e, w in zip(eta, omega)]
    assert prior[1] > prior[0] + 1e-3, prior  # the effects' density given omega (the centred form)
    deviation = [(e - loc)[:, rate].mean().abs() for e in eta]
    assert deviation[1] < 1e-12 < deviation[0], deviation
    assert torch.allclose(eta[0][:, output], eta[1][:, output], rtol=1e-12)
    spread = (eta[1] - loc).pow(2).mean(0).sqrt()  # the EM update of omega, within its prior's central 95%
    bounds = model.omega_init * torch.tensor([-1.0, 1.0], dtype=D64).mul(2 * model.omega_prior).exp()
    assert torch.allclose(after["omega"], spread.clamp(*bounds), rtol=1e-12), (after["omega"], spread)
    assert not torch.equal(before["R.1.weight"], after["R.1.weight"])
    assert model.warm_start_values({"R.0.weight": before["R.0.weight"]}, split).keys() == {"R.0.weight"}


def _learned_omega(fit):
    with param_scope(fit.param_state):
        return pyro.param("omega").detach()


def test_outflow_effect_is_the_absorption_rate_of_the_closed_form():
    """``"outflow[1]"`` on a linear gut (component 1) -> central (component 0) field is a per-unit absorption rate
    ``ka e^eta``, mass conserved: the model's mean is the one-compartment oral closed form to 1e-6 (scaling the gut's
    derivative instead, ``"rate[1]"``, is not: the absorbed amount changes by ``e^-eta``).  With a hidden layer,
    R sees the scaled component, so the same holds for any R."""
    problem = load_problem("theophylline_events", dtype=D64)
    split = problem.train.select(torch.arange(3), covariates=None)  # models without a covariate model
    ka, ke = 1.5, 0.09
    kw = {"hidden_dim": 2, "Z_hidden": None, "scale": 0.5, "omega": "latent", "solver": {"method": "rk4", "substeps": 20}}
    eta = torch.tensor([[0.6], [-0.4], [0.0]], dtype=D64)
    data = {"R.0.weight": torch.tensor([[-ke, ka], [0.0, -ka]], dtype=D64), "R.0.bias": torch.zeros(2, dtype=D64),
            "omega": torch.ones(1, dtype=D64), "eta_z": eta}
    t, dose = split.t, split.doses.amount[:, :1]
    ka_i = ka * eta.exp()
    expected = dose * ka_i / (ka_i - ke) * ((-ke * t).exp() - (-ka_i * t).exp())
    means = {}
    for effect in ("outflow[1]", "rate[1]"):
        model = HierarchicalNODEModel(effects=(effect,), R_hidden=(), **kw)
        tr = poutine.trace(poutine.condition(model, data)).get_trace(*split.args, **split.kwargs)
        means[effect] = tr.nodes["y_mean"]["value"][..., 0]
    assert (means["outflow[1]"] - expected).abs().max() < 1e-6
    assert (means["rate[1]"] - expected).abs().max() > 0.1
    # a hidden layer reads the scaled state: its first-layer column of the gut is scaled per unit
    model = HierarchicalNODEModel(effects=("outflow[1]",), R_hidden=(4,), **kw)
    pop = HierarchicalNODEModel(effects=(), R_hidden=(4,), **kw)
    gen = torch.Generator().manual_seed(0)
    net = {k: torch.randn(v, generator=gen, dtype=D64) * 0.3 for k, v in model.weight_shapes().items()}
    got = poutine.trace(poutine.condition(model, {**data, **net})).get_trace(*split.args, **split.kwargs)
    for i in range(len(split)):
        w = net["R.0.weight"] * torch.tensor([1.0, float(eta[i].exp())], dtype=D64)
        one = split.select(torch.tensor([i]))
        want = poutine.trace(poutine.condition(pop, {**net, "R.0.weight": w})).get_trace(*one.args, **one.kwargs)
        assert torch.allclose(got.nodes["hidden"]["value"][i], want.nodes["hidden"]["value"][0], atol=1e-10)
    with pytest.raises(ValueError, match=r"0 <= k < hidden_dim=2"):
        HierarchicalNODEModel(effects=("outflow[2]",), **kw)


def test_zero_equilibrium_keeps_an_undosed_unit_at_zero():
    """``equilibrium="zero"``: R's last bias is ``-R(0)`` of the other weights (not a latent), so ``R(0) = 0`` and a
    unit without doses stays at zero (up to rounding, which an unstable zero state amplifies: hence weights of
    scale 0.3), and R(h) is otherwise the free network's minus its value at 0; without it, the same weights move an
    undosed unit away from zero (a spurious steady state elsewhere)."""
    problem = load_problem("theophylline_events", dtype=D64)
    split = problem.train.select(torch.arange(3), covariates=None)  # models without a covariate model
    undosed = split.doses._replace(amount=torch.zeros_like(split.doses.amount))
    kw = {"hidden_dim": 2, "R_hidden": (8,), "Z_hidden": None, "scale": 0.5, "effects": ("rate", "output")}
    anchored, free = HierarchicalNODEModel(equilibrium="zero", **kw), HierarchicalNODEModel(**kw)
    assert "R.1.bias" not in anchored.weight_shapes() and anchored.layer_sites("last_layer") == ["R.1.weight"]
    gen = torch.Generator().manual_seed(1)
    net = {k: 0.3 * torch.randn(v, generator=gen, dtype=D64) for k, v in free.weight_shapes().items()}
    zero = torch.zeros(2, dtype=D64)
    net["eta_z"] = torch.randn(3, 2, generator=gen, dtype=D64)
    assert anchored.R(anchored._anchor(net, zero), zero).abs().max() < 1e-15  # R(0) = 0 (with any rate effect)
    kwargs = dict(split.kwargs, doses=undosed)
    tr = poutine.trace(poutine.condition(anchored, net)).get_trace(*split.args, **kwargs)
    assert "R.1.bias" not in tr.nodes and tr.nodes["hidden"]["value"].abs().max() < 1e-5
    moved = poutine.trace(poutine.condition(free, net)).get_trace(*split.args, **kwargs)
    assert moved.nodes["hidden"]["value"].abs().max() > 0.1
    # with doses: the free field with its last bias set to -R(0) gives the same solution
    bias = -free.R({**net, "R.1.bias": zero}, zero)
    got = poutine.trace(poutine.condition(anchored, net)).get_trace(*split.args, **split.kwargs)
    want = poutine.trace(poutine.condition(free, {**net, "R.1.bias": bias})).get_trace(*split.args, **split.kwargs)
    assert torch.allclose(got.nodes["hidden"]["value"], want.nodes["hidden"]["value"], atol=1e-10)
    with pytest.raises(ValueError, match="equilibrium"):
        HierarchicalNODEModel(equilibrium="steady", **kw)
    with pytest.raises(ValueError, match="equilibrium"):
        HierarchicalNODEModel(equilibrium="zero", **dict(kw, effects=("input",)))


def test_typical_rate_is_the_network_output_scale_and_warm_starts_fold_it_in():
    """``typical_rate="latent"``: a latent log typical rate ``c`` gives the likelihood of the model without it
    with R's last layer scaled by ``e^c`` (to rounding); ``warm_start_values`` moves ``c`` into that layer and
    restarts it at 0, the likelihood unchanged; it is in the random-effects block; a model without a rate
    effect refuses it."""
    problem = load_problem("pk_repeated", num_units=8, dtype=D64)
    split = problem.train
    typical = problem.default_model(typical_rate="latent", parameterization="centred")
    plain = problem.default_model(parameterization="centred")
    assert typical.layer_sites("random_effects") == ["eta", "typical_rate"]
    pyro.set_rng_seed(0)
    values = {k: v["value"] for k, v in poutine.trace(typical).get_trace(*split.args, **split.kwargs).nodes.items()
              if v["type"] == "sample" and not v["is_observed"] and not v["infer"].get("_deterministic")}
    values["typical_rate"] = torch.tensor([0.4], dtype=D64)
    scaled = dict(values, **{k: values[k] * math.exp(0.4) for k in ("R.1.weight", "R.1.bias")})

    def obs(model, v):
        tr = poutine.trace(poutine.condition(model, v)).get_trace(*split.args, **split.kwargs)
        return tr.log_prob_sum(lambda name, site: name == "obs")

    assert torch.allclose(obs(typical, values), obs(plain, scaled), rtol=1e-12)
    assert not torch.allclose(obs(typical, values), obs(plain, values), rtol=1e-3)
    moved = typical.warm_start_values(values, split)
    assert moved["typical_rate"].abs().max() == 0
    assert torch.allclose(obs(typical, moved), obs(typical, values), rtol=1e-12)
    guide = AutoNormal(typical)  # vectorised particles: one solve per particle, not per pair of particles
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    tr = elbo._get_vectorized_trace(typical, guide, split.args, split.kwargs)[0]
    assert tr.nodes["y_mean"]["value"].shape == (3, len(split), split.t.numel(), 1)
    with pytest.raises(ValueError, match="typical_rate='latent' needs a 'rate'"):
        problem.default_model(typical_rate="latent", effects=("output",))


@pytest.mark.parametrize("kwargs, match", [
    ({"omega_init": 0.0}, "omega_init .*expected a finite number > 0, got 0.0"),
    ({"omega_init": -0.3}, "omega_init"), ({"omega_prior": float("inf")}, "omega_prior"),
    ({"dose_scale": 0}, "dose_scale .*> 0"), ({"dose_scale": -1.0}, "dose_scale"),
    ({"effects": ("rate", "output", "rate")}, r"effects: \['rate'\] given more than once"),
    ({"effects": ("rate[0]", "rate[0]")}, r"effects: \['rate\[0\]'\] given more than once"),
    ({"effects": "rate"}, "effects: expected a tuple"),
    ({"covariate_names": ("WT", "AGE", "WT")}, r"covariate_names: \['WT'\] given more than once"),
    ({"covariate_names": ("WT",), "covariate_dim": 2}, "covariate_names: 1 names for covariate_dim=2"),
    ({"covariate_dim": -1}, "covariate_dim: expected an integer >= 0"),
    ({"covariate_dim": 2, "covariate_loc": [70.0, 1.0, 3.0]}, r"covariate_loc: expected a number or shape \(2,\)"),
    ({"covariate_dim": 2, "covariate_scale": [10.0, 0.0]}, "covariate_scale: expected finite positive values"),
    ({"covariate_dim": 1, "covariate_loc": "seventy"}, "covariate_loc: expected a number"),
    ({"omega": "fixed"}, "omega: expected one of"),
])
def test_bad_options_are_refused_up_front_by_name(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        HierarchicalNODEModel(**kwargs)


def test_input_effects_may_repeat_and_covariate_names_set_the_dimension():
    model = HierarchicalNODEModel(effects=("input", "input", "rate"), covariate_names=("WT", "AGE"))
    assert model.covariate_dim == 2 and model.R.sizes[0] == model.hidden_dim + 2


def test_covariates_must_fit_the_covariate_model():
    """A model with effects but no covariate model refuses covariates (they would be ignored); the population
    model, which has nothing for them to shift, accepts a split's covariates; rows and width must fit."""
    theo = load_problem("theophylline_events", dtype=D64)
    split = theo.train.select(torch.arange(3))
    with pytest.raises(ValueError, match=r"covariates: the model has no covariate model \(covariate_dim=0\)"):
        theo.default_model(covariate_dim=0)(*split.args, **split.kwargs)
    poutine.trace(theo.default_model(effects=(), covariate_dim=0)).get_trace(*split.args, **split.kwargs)
    model = theo.default_model()
    with pytest.raises(ValueError, match="covariates: 2 rows but the data have 3 trajectories"):
        model(*split.args, **dict(split.kwargs, covariates=split.covariates[:2]))
    with pytest.raises(ValueError, match=r"covariates: the model expects \(1,\) covariates per unit, got \(3, 2\)"):
        model(*split.args, **dict(split.kwargs, covariates=split.covariates.expand(3, 2)))
    with pytest.raises(ValueError, match="covariates: contains NaN"):
        model(*split.args, **dict(split.kwargs, covariates=torch.full((3, 1), float("nan"), dtype=D64)))
