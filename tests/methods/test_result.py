"""MethodResult: stored draws (all, a subset without replacement, more with replacement), guide draws need a count,
predictions return the model's predict sites with their shapes."""
import pytest
import torch

from pyro_node_uq.methods import MethodResult


def stored():
    samples = {"w": torch.arange(12.0).reshape(3, 4, 1)}  # 3 chains x 4 draws
    return MethodResult("toy", None, samples=samples)


def test_stored_draws_all_subset_and_with_replacement():
    res = stored()
    assert res.num_draws == 12
    torch.testing.assert_close(res.posterior_samples()["w"][:, 0], torch.arange(12.0))
    sub = res.posterior_samples(5, seed=1)["w"][:, 0]
    assert sub.shape == (5,) and len(set(sub.tolist())) == 5 and bool((sub[1:] > sub[:-1]).all())
    assert torch.equal(sub, res.posterior_samples(5, seed=1)["w"][:, 0])  # seeded
    more = res.posterior_samples(30, seed=0)["w"]
    assert more.shape == (30, 1) and len(set(more[:, 0].tolist())) < 30


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
