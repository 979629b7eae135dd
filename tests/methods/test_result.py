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


def test_predict_returns_the_models_predict_sites(problem, small):
    model, res = small
    out = res.predict(problem.test, num_samples=3)
    assert set(out) == set(model.predict_sites) == {"obs", "y_mean", "hidden"}
    N, T = problem.test.y.shape[:2]
    assert out["obs"].shape == (3, N, T, 2) and out["hidden"].shape == (3, N, T, model.hidden_dim)
    assert set(res.predict(problem.test, num_samples=2, sites=["y_mean"])) == {"y_mean"}
