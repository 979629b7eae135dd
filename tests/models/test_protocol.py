"""The ProcessModel protocol: defaults a plain model gets, what NODEModel overrides, divergence mode copies, and
every model of the package honouring a subsampled plate (Pyro's subsample=, data-parallel shards on 2 processes)."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_node_uq.data import load_problem
from pyro_node_uq.models import (
    SDEBNN,
    HierarchicalNODEModel,
    NODEModel,
    PlainModel,
    ProcessModel,
)

D64 = torch.float64


def test_defaults_and_divergence_copies():
    base = ProcessModel()
    assert base.max_plate_nesting == 1 and base.obs_site == "obs" and base.noise_scale() is None
    copy = base.with_divergence("reject")
    assert copy.on_divergence == "reject" and base.on_divergence == "raise"
    with pytest.raises(ValueError, match="on_divergence: expected 'raise' or 'reject'"):
        base.with_divergence("ignore")
    with pytest.raises(ValueError, match="names no layers"):
        base.layer_sites("last_layer")


def test_node_model_reports_sites_noise_and_hidden_observability():
    model = NODEModel(obs_dim=2, input_dim=1, hidden_dim=3, Z_hidden=None, scale="latent")
    assert model.predict_sites == {"obs": 3, "y_mean": 3, "hidden": 3, "sigma": 1}
    assert model.observes_hidden
    assert not NODEModel(obs_dim=2, input_dim=1, hidden_dim=3).observes_hidden  # a linear Z in between
    assert NODEModel(obs_dim=1, scale=0.3).noise_scale() == 0.3
    sigma = torch.full((4, 2), 0.5)
    assert model.noise_scale(prediction={"sigma": sigma}).shape == (4, 1, 1, 2)  # one scale per draw


def test_fit_and_predict_args_come_from_the_split():
    problem = load_problem("chemical", num_train=2, num_times=5)
    model = problem.default_model()
    args, kwargs = model.fit_args(problem.train)
    assert args[2] is problem.train.y
    args, kwargs = model.predict_args(problem.test)
    assert args[2] is None and kwargs == {"num_trajectories": len(problem.test)}


# ---------------------------------------------------------------------------------------- subsampled plates
# Every ProcessModel of the package, by the case that exercises it: the subsampled log-likelihood is the scaled
# subset (Pyro's subsample= through a guide's plate, and the data-parallel handler), and data-parallel SVI on 2
# processes equals 1 process.  A new ProcessModel must add a case here (checked below).
CASES = {"node": NODEModel, "hierarchical": HierarchicalNODEModel, "hierarchical_centred_covariates":
         HierarchicalNODEModel, "sdebnn": SDEBNN, "sdebnn_stochastic": SDEBNN, "plain": PlainModel}
DATA_PARALLEL = ("node", "hierarchical", "hierarchical_centred_covariates", "sdebnn", "plain")  # deterministic fits


def _toy(t, x=None, y=None, num_trajectories=None):
    """A plain Pyro model in the subsampling idiom, with a per-unit latent ``b``."""
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    with pyro.plate("trajectories", num_trajectories or y.shape[0], dim=-1) as idx:
        b = pyro.sample("b", dist.Normal(a, 1.0))
        fn = dist.Normal(b[..., None, None] * t[:, None], 0.5).expand(b.shape + (len(t), 1)).to_event(2)
        return pyro.sample("obs", fn, obs=None if y is None else y[idx])


def _case(name):
    """``(model, args, kwargs, plate, guide_factory)`` of one case, in float64."""
    from pyro.infer.autoguide import AutoDelta

    if name.startswith("sdebnn"):
        x = torch.linspace(-1, 1, 8, dtype=D64)[:, None]
        model = SDEBNN(1, 1, width=(4,), solver={"dt": 0.25}, stochastic=name == "sdebnn_stochastic").to(D64)
        return model, (x, torch.sin(3 * x)), {}, "data", lambda: model.guide
    if name == "plain":
        gen = torch.Generator().manual_seed(0)
        model = PlainModel(_toy, 1)
        t = torch.linspace(0, 1, 5, dtype=D64)
        y = torch.randn(7, 5, 1, generator=gen, dtype=D64)
    else:
        problem = {"node": lambda: load_problem("chemical", num_train=6, num_times=8, seed=0).to(D64),
                   "hierarchical": lambda: load_problem("pk_repeated", num_units=8, dtype=D64),
                   "hierarchical_centred_covariates": lambda: load_problem("theophylline_events", dtype=D64)}[name]()
        options = {"node": {"R_hidden": (4,)}, "hierarchical": {},
                   "hierarchical_centred_covariates": {"parameterization": "centred", "omega": "latent"}}[name]
        model = problem.default_model(**options)
        t, y = problem.train.t, problem.train.y
        args, kwargs = model.fit_args(problem.train)
        assert type(model) is CASES[name]
        return model, args, kwargs, "trajectories", lambda: AutoDelta(model, init_loc_fn=model.init_loc_fn(0))
    return model, (t, None, y), {}, "trajectories", lambda: AutoDelta(model)


def test_every_process_model_has_a_subsampling_case():
    classes, stack = set(), [ProcessModel]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if sub.__module__.startswith("pyro_node_uq."):
                classes.add(sub)
    assert classes <= set(CASES.values()), f"add a subsampling case for {classes - set(CASES.values())}"


def _latent_values(trace, plate, idx):
    """The trace's latent values with the plate's units restricted to ``idx`` (per-unit sites along the plate's
    dim; an SDE-BNN's global ``features`` along its units dim)."""
    values = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site["infer"].get("_deterministic") or name == plate:
            continue
        v, event = site["value"], len(site["fn"].event_shape)
        if any(f.name == plate for f in site["cond_indep_stack"]):
            v = v.index_select(v.dim() - event - 1, idx)
        elif name == "features":
            v = v.index_select(v.dim() - 2, idx)
        values[name] = v
    return values


@pytest.mark.parametrize("how", ["subsample_in_a_guide", "data_parallel_handler"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_subsampled_plate_scores_the_scaled_subset(name, how):
    """With the plate's units ``idx`` (k of N), every site inside the plate is the full-data site's value and
    log-density at ``idx``, scaled by ``N / k``: the hierarchical model's effects and likelihood included."""
    from pyro_node_uq.infer.distributed import subsample_plate

    model, args, kwargs, plate, _ = _case(name)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    full = poutine.trace(model).get_trace(*args, **kwargs)
    N = full.nodes[plate]["fn"].size
    idx = torch.tensor([N - 1, 0, 2])
    conditioned = poutine.condition(model, _latent_values(full, plate, idx))
    if how == "subsample_in_a_guide":  # Pyro's idiom: the guide's plate subsamples, the model replays it
        chooser = poutine.trace(lambda: pyro.plate(plate, N, subsample=idx)).get_trace()
        sub = poutine.trace(poutine.replay(conditioned, trace=chooser)).get_trace(*args, **kwargs)
    else:
        with subsample_plate(plate, lambda size: idx):
            sub = poutine.trace(conditioned).get_trace(*args, **kwargs)
    local = [n for n, s in full.nodes.items() if s["type"] == "sample" and n != plate
             and any(f.name == plate for f in s["cond_indep_stack"]) and not s["infer"].get("_deterministic")]
    assert "obs" in local and (name not in ("hierarchical", "hierarchical_centred_covariates", "plain")
                               or len(local) > 1)
    for site in local:
        f, s = full.nodes[site], sub.nodes[site]
        assert s["scale"] == pytest.approx(N / 3), site
        torch.testing.assert_close(s["value"], f["value"].index_select(f["value"].dim() - len(
            f["fn"].event_shape) - 1, idx), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(s["fn"].log_prob(s["value"]), f["fn"].log_prob(f["value"])[..., idx],
                                   rtol=1e-7, atol=1e-7)


def _data_parallel_fit(name, processes=1, steps=3):
    """``steps`` of DataParallelSVI with a minibatch of 2 units per process; the losses and final parameters."""
    from pyro.infer import Trace_ELBO

    from pyro_node_uq.infer.distributed import DataParallelSVI

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model, args, kwargs, plate, guide = _case(name)
        units = set()

        def counted(*a, **k):  # the units each evaluation of the model scores
            with poutine.trace() as tracer:
                out = model(*a, **k)
            units.add(tracer.trace.nodes["obs"]["value"].shape[0])
            return out

        svi = DataParallelSVI(counted, guide(), pyro.optim.Adam({"lr": 0.02}), Trace_ELBO(), plate=plate,
                              subsample_size=2 * processes, seed=3)
        losses = [svi.step(*args, **kwargs) for _ in range(steps)]
        params = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
        return {"losses": losses, "params": params, "units": units}
    finally:
        torch.set_default_dtype(dtype)


def _data_parallel_fits():
    return {name: _data_parallel_fit(name, 2) for name in DATA_PARALLEL}


@pytest.fixture(scope="module")
def two_process_fits():
    from pyro_node_uq.infer.distributed import spawn

    return spawn(_data_parallel_fits, 2, timeout=400)


@pytest.mark.parametrize("name", DATA_PARALLEL)
def test_data_parallel_minibatches_equal_one_process(two_process_fits, name):
    """DataParallelSVI(subsample_size=4) on 2 processes (2 units each) equals 1 process with the same minibatch
    of 4, to 1e-5: losses and parameters (the hierarchical model's per-unit effects included)."""
    reference = _data_parallel_fit(name, processes=2)
    assert reference["units"] == {4}  # the model scored the minibatch, not every unit
    for rank, result in enumerate(two_process_fits):
        got = result[name]
        assert got["units"] == {2}, f"rank {rank} scored {got['units']} units, not its shard of 2"
        torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(reference["losses"]), rtol=1e-5,
                                   atol=1e-5, msg=lambda m, rank=rank: f"rank {rank}: {m}")
        assert got["params"].keys() == reference["params"].keys()
        for key, value in reference["params"].items():
            torch.testing.assert_close(got["params"][key], value, rtol=1e-5, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")
