"""MethodResult: stored draws (all, a subset without replacement, more with replacement), guide draws need a count,
predictions return the model's predict sites with their shapes."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Predictive

from pyro_node_uq.methods import MethodResult
from pyro_node_uq.methods.result import conditioned_trace
from pyro_node_uq.models.protocol import PlainModel
from pyro_node_uq.utils.seeding import param_scope


def stored():
    samples = {"w": torch.arange(12.0).reshape(3, 4, 1)}  # 3 chains x 4 draws
    return MethodResult("toy", None, samples=samples)


def test_stored_draws_all_subset_and_tiled():
    res = stored()
    assert res.num_draws == 12
    torch.testing.assert_close(res.posterior_samples()["w"][:, 0], torch.arange(12.0))
    sub = res.posterior_samples(5, seed=1)["w"][:, 0]
    assert sub.shape == (5,) and len(set(sub.tolist())) == 5 and bool((sub[1:] > sub[:-1]).all())
    assert torch.equal(sub, res.posterior_samples(5, seed=1)["w"][:, 0])  # seeded
    more = res.posterior_samples(30, seed=0)["w"][:, 0]  # every draw twice, then 6 of them a third time
    assert more.shape == (30,) and torch.equal(more[:24], torch.arange(12.0).repeat(2))
    assert len(set(more[24:].tolist())) == 6 and sorted(torch.bincount(more.long()).tolist()) == [2] * 6 + [3] * 6


def test_per_draw_params_are_each_draws_own_in_predict(problem, small):
    """``draw_params``: draw ``i`` of ``predict`` runs the model with its own value of the param (here a learned
    noise scale of 0.01 for one stored draw and 1.0 for the other), which ``predict`` also returns."""
    _, fitted = small
    learned = problem.default_model(R_hidden=(4,), scale="learned")
    with param_scope({"params": {}, "constraints": {}}):
        pyro.param("sigma", torch.full((2,), 0.1), constraint=dist.constraints.positive)
        state = pyro.get_param_store().get_state()
    weights = fitted.posterior_samples(1)
    samples = {k: v.expand((2,) + v.shape)[:, None] for k, v in weights.items()}  # the same weights twice
    sigma = torch.tensor([0.01, 1.0])[:, None, None].expand(2, 1, 2)
    res = MethodResult("toy", learned, samples=samples, param_state=state, draw_params={"sigma": sigma})
    out = res.predict(problem.test, num_samples=400, seed=0)  # draws 0, 1, 0, 1, ...
    torch.testing.assert_close(out["sigma"], sigma[:, 0].repeat(200, 1))
    noise = (out["obs"] - out["y_mean"]).reshape(200, 2, -1).transpose(0, 1).reshape(2, -1).std(-1)
    torch.testing.assert_close(noise, torch.tensor([0.01, 1.0]), rtol=0.05, atol=0)
    torch.testing.assert_close(learned.noise_scale(state, out)[:2, 0, 0], sigma[:, 0])


def test_a_result_without_draws_or_count_says_what_is_missing():
    with pytest.raises(ValueError, match="neither a guide nor stored samples"):
        MethodResult("empty", None).posterior_samples(3)
    with pytest.raises(ValueError, match="num_samples: a guide needs the number of draws"):
        MethodResult("guided", None, guide=object()).posterior_samples()


@pytest.mark.parametrize("num_samples, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("10", TypeError)])
def test_a_draw_count_that_is_not_a_positive_integer_is_named(num_samples, error):
    with pytest.raises(error, match="num_samples: expected an integer >= 1"):
        stored().posterior_samples(num_samples)


def test_predict_returns_the_models_predict_sites(problem, small):
    model, res = small
    out = res.predict(problem.test, num_samples=3)
    assert set(out) == set(model.predict_sites) == {"obs", "y_mean", "hidden"}
    N, T = problem.test.y.shape[:2]
    assert out["obs"].shape == (3, N, T, 2) and out["hidden"].shape == (3, N, T, model.hidden_dim)
    assert set(res.predict(problem.test, num_samples=2, sites=["y_mean"])) == {"y_mean"}


def test_a_float32_fit_predicts_and_converts_float64_data():
    """A fit under the default float32 given float64 data (NumPy's dtype) casts the data instead of failing
    inside the solver loop; the InferenceData conversion does the same."""
    from pyro_node_uq.data import load_problem
    from pyro_node_uq.diagnostics import to_inference_data
    from pyro_node_uq.methods import run_map

    torch.set_default_dtype(torch.float32)  # the conftest resets it
    small = {"num_train": 2, "num_test": 2, "num_extrapolation": 2, "num_times": 11}
    p32, p64 = (load_problem("chemical", dtype=d, **small) for d in (torch.float32, torch.float64))
    res = run_map(p32.default_model(), p32.train, num_steps=2, progress_bar=False)
    out = res.predict(p64.test, num_samples=2)
    assert out["y_mean"].dtype == torch.float32 and out["y_mean"].shape[1:3] == p64.test.y.shape[:2]
    assert res.in_fit_dtype(p64.test).t.dtype == torch.float32 and res.in_fit_dtype(p32.test) is p32.test
    idata = to_inference_data(res, p64.test, num_samples=4, num_chains=2)
    assert idata.log_likelihood["obs"].shape[:2] == (2, 2)



calls = []


def _plain_model(x, y=None):
    """Two global scalars and a per-point latent inside a plate of size ``len(x)``."""
    calls.append(1)
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x), dim=-1):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        mean = pyro.deterministic("mean", a + x * w + z)
        return pyro.sample("y", dist.Normal(mean, 0.1), obs=y)


def test_conditioned_trace_gives_predictives_values_in_one_run_of_the_model():
    """Against Pyro's ``Predictive(parallel=True)``: the same values for the fixed latents and the deterministic
    site and the same shape for the sampled observations (their noise differs: ``Predictive`` first runs the model
    with prior draws, which takes random numbers, and whose NODE solves may diverge), from one run of the model
    instead of three."""
    x = torch.linspace(0, 1, 5)
    samples = {"a": torch.randn(4), "w": torch.randn(4), "z": torch.randn(4, 5)}
    calls.clear()
    pyro.set_rng_seed(3)
    trace = conditioned_trace(PlainModel(_plain_model, max_plate_nesting=1), samples, 4, (x,))
    assert len(calls) == 1
    calls.clear()
    pyro.set_rng_seed(3)
    ref = Predictive(_plain_model, posterior_samples=samples, num_samples=4, parallel=True,
                     return_sites=["a", "w", "z", "mean", "y"])(x)
    assert len(calls) == 3
    for name, value in ref.items():
        ours = trace.nodes[name]["value"]
        assert ours.shape[0] == 4 and ours.numel() == value.numel(), name
        if name != "y":
            torch.testing.assert_close(ours.reshape(value.shape), value, msg=name)
    y, mean = trace.nodes["y"]["value"], trace.nodes["mean"]["value"]
    assert y.shape == mean.shape == (4, 5) and 0.05 < float((y - mean).std()) < 0.2
