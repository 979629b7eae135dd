"""The comparison's scores use the right noise scale and handle every model configuration (issue: wrong numbers)."""
import math
import tempfile
from dataclasses import replace

import pyro
import pytest
import torch

from pyro_node_uq.compare import run_comparison
from pyro_node_uq.data import Problem, Split, load_problem
from pyro_node_uq.diagnostics import predictive_nll, score
from pyro_node_uq.methods import run_autonormal, run_map, run_nuts


def _learned_map(sigma=1.5, num_steps=3):
    """A MAP fit of a learned-scale model whose fitted sigma is set to ``sigma`` (far from ``scale_init``)."""
    problem = load_problem("chemical", num_train=2, num_test=2, num_extrapolation=2, num_times=11)
    model = problem.default_model(R_hidden=(4,), scale="learned", scale_init=0.1)
    res = run_map(model, problem.train, num_steps=num_steps, progress_bar=False)
    res.param_state["params"]["sigma"] = torch.full_like(res.param_state["params"]["sigma"], math.log(sigma))
    return problem, model, res


def test_noise_scale_of_a_learned_sigma_is_constrained():
    """The scorer read the stored unconstrained value (the log of sigma): 0.405 instead of 1.5."""
    _, _, res = _learned_map(1.5)
    torch.testing.assert_close(res.model.noise_scale(res.param_state), torch.full((2,), 1.5))


def test_nuts_and_autonormal_carry_the_learned_sigma_over_from_map():
    problem, model, res = _learned_map(1.5)
    an = run_autonormal(model, problem.train, warm_start=res, num_steps=1, lr=1e-4, elbo_particles=0,
                        progress_bar=False)
    torch.testing.assert_close(an.model.noise_scale(an.param_state), torch.full((2,), 1.5), rtol=1e-3, atol=0)
    nuts = run_nuts(model, problem.train, warm_start=res, num_samples=2, warmup_steps=2, max_tree_depth=2,
                    num_chains=1, progress_bar=False)
    torch.testing.assert_close(nuts.model.noise_scale(nuts.param_state), torch.full((2,), 1.5))


def _autonomous_problem(**model_kwargs):
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 11)

    def split(n):
        return Split(t=t, x=None, y=0.1 * torch.randn(n, 11, 2, generator=gen))

    return Problem("autonomous", "no inputs", split(5), split(4), split(3), obs_names=("a", "b"),
                   model_kwargs=dict(R_hidden=(4,), init="learned", **model_kwargs))


def test_no_input_node_with_several_trajectories_predicts_and_compares():
    """``predict`` failed ("shape '[7, 7, 11, 2]' is invalid") and the LTAU recorder broke every method."""
    problem = _autonomous_problem()
    res = run_map(problem.default_model(), problem.train, num_steps=3, progress_bar=False)
    pred = res.predict(problem.test, num_samples=7)
    assert pred["y_mean"].shape == (7, 4, 11, 2) and pred["hidden"].shape == (7, 4, 11, 2)
    rows = run_comparison(problem, ["map", "ltau", "autonormal"], out=tempfile.mkdtemp(), quick=True,
                          num_samples=8, overrides={"map": {"num_steps": 5}, "autonormal": {"num_steps": 2}},
                          idata_samples=8, progress_bar=False)
    assert [r["status"] for r in rows] == ["ok"] * 3, rows


def test_latent_sigma_is_scored_per_draw():
    """With ``scale="latent"`` the job reported no NLL; now each draw is scored with its own sigma."""
    pyro.clear_param_store()
    problem = _autonomous_problem(scale="latent")
    rows = run_comparison(problem, ["map"], out=tempfile.mkdtemp(), quick=True, num_samples=8,
                          overrides={"map": {"num_steps": 5}}, idata_samples=8, progress_bar=False)
    assert rows[0]["status"] == "ok" and math.isfinite(rows[0]["test_nll"])
    res = run_map(problem.default_model(), problem.train, num_steps=5, progress_bar=False)
    pred = res.predict(problem.test, num_samples=6, sites=("obs", "y_mean", "sigma"))
    scale = res.model.noise_scale(res.param_state, pred)
    assert scale.shape == (6, 1, 1, 2)
    hand = -torch.distributions.Normal(pred["y_mean"], scale).log_prob(problem.test.y).logsumexp(0).sub(
        math.log(6)).mean()
    assert score(pred, problem.test.y, noise_scale=scale)["nll"] == pytest.approx(float(hand.detach()), rel=1e-5)


def test_score_accepts_nan_at_masked_entries_and_names_observed_ones():
    y = torch.zeros(2, 5, 1)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 2] = False
    y[0, 2] = float("nan")
    pred = {"obs": torch.randn(40, 2, 5, 1), "y_mean": torch.zeros(40, 2, 5, 1)}
    assert score(pred, y, mask, noise_scale=1.0)["nll"] == pytest.approx(0.5 * math.log(2 * math.pi))
    with pytest.raises(ValueError, match=r"y: observed entry \(0, 2, 0\) is NaN"):
        score(pred, y, None, noise_scale=1.0)
    assert predictive_nll(pred["y_mean"], torch.zeros(2, 5, 1), 1.0) == pytest.approx(0.9189385)


def test_predictive_spread_is_the_norm_over_outputs_of_the_draws_standard_deviation():
    from pyro_node_uq.compare.scoring import predictive_spread

    y = torch.tensor([[[[0.0, 0.0]]], [[[3.0, 4.0]]]])  # two draws, one point, two outputs: stds 3/sqrt2, 4/sqrt2
    torch.testing.assert_close(predictive_spread(y), torch.tensor([[5.0 / 2 ** 0.5]]))
    assert predictive_spread(y[:1]).shape == (1, 1) and float(predictive_spread(y[:1])) == 0.0


def test_a_student_t_model_is_scored_with_its_student_t_density():
    """The job scored every model's NLL with a Normal density, a Student-t model's too."""
    from pyro_node_uq.compare.scoring import score_result

    pyro.clear_param_store()
    problem = _autonomous_problem(noise="studentt", df=3.0)
    res = run_map(problem.default_model(), problem.train, num_steps=5, progress_bar=False)
    pred = res.predict(problem.test, num_samples=6)
    row = score_result(res, problem, {"test": pred}, hidden=False)
    scale = res.model.noise_scale(res.param_state, pred)
    hand = -torch.distributions.StudentT(3.0, pred["y_mean"], scale).log_prob(problem.test.y).logsumexp(0).sub(
        math.log(6)).mean()
    assert row["test_nll"] == pytest.approx(float(hand.detach()), rel=1e-6)
    normal = score(pred, problem.test.y, noise_scale=scale)["nll"]
    assert abs(row["test_nll"] - normal) > 1e-3  # the two densities differ, so the check above can fail


def test_the_training_mean_reference_scores_a_normal_at_the_training_mean_and_sd():
    """The report's reference rows: the held-out NLL is the Normal density's at the training observations' mean and
    sd (closed form), coverage and CRPS come from its draws; a test split far from the training data scores worse."""
    from pyro_node_uq.compare.scoring import training_mean_rows

    problem = _autonomous_problem()
    rows = training_mean_rows(problem, num_samples=4000)
    y = problem.train.y.reshape(-1, 2)
    loc, sd = y.mean(0), y.std(0)
    hand = -torch.distributions.Normal(loc, sd).log_prob(problem.test.y).mean()
    assert [r["split"] for r in rows] == ["test", "extrapolation"]
    assert rows[0]["NLL"] == pytest.approx(float(hand), rel=1e-6)
    assert 0.8 < rows[0]["cov90"] < 1.0  # same law as the training data: about 90%
    far = replace(problem, test=replace(problem.test, y=problem.test.y + 1.0))
    assert training_mean_rows(far)[0]["NLL"] > rows[0]["NLL"] + 10
