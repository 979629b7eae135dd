"""Screening a deep ensemble for failed fits: the members' training log-likelihoods against the closed form, the
gap rule, and a member in a poor basin left out of the ensemble."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods.screening import failed_members, member_log_likelihoods
from pyro_node_uq.models.protocol import PlainModel


def _line(x, y=None):
    a = pyro.sample("a", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x)):
        return pyro.sample("y", dist.Normal(a * x, 0.5), obs=y)


class _Split:
    """The two fields member_log_likelihoods reads of a split, for a plain model."""

    def __init__(self, x, y):
        self.x, self.y, self.mask = x, y, None


class _LineModel(PlainModel):
    def fit_args(self, split):
        return (split.x, split.y), {}


def test_log_likelihoods_are_the_data_density_of_each_draw_and_count_the_observations():
    """For ``y ~ Normal(a x, 0.5)`` each draw's value is ``sum_i log N(y_i; a x_i, 0.5)`` (float64, to 1e-10):
    the prior of the conditioned ``a`` is not in it, and the observations are counted once."""
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    y = 1.5 * x + 0.1 * torch.sin(7 * x)
    a = torch.tensor([1.5, 0.0, -2.0], dtype=torch.float64)
    log_liks, num_obs = member_log_likelihoods(_LineModel(_line, max_plate_nesting=1), _Split(x, y), {"a": a})
    expected = torch.stack([dist.Normal(ai * x, 0.5).log_prob(y).sum() for ai in a])
    assert num_obs == 7
    assert torch.allclose(log_liks, expected, rtol=0, atol=1e-10)


def test_the_gap_rule_counts_nats_per_observation_and_names_a_minority_only():
    """Gaps of 0.49 and 0.51 nats per observation straddle the default 0.5; a member whose likelihood is not
    finite (a diverged solve) fails; when at most half the members are within the gap of the best (members that
    disagree as a whole) none is named; ``None`` keeps everything, a negative gap is an error."""
    n = 100
    log_liks = torch.tensor([0.0, -0.2 * n, -0.49 * n, -0.51 * n, -math.inf])
    assert failed_members(log_liks, n) == [3, 4]
    assert failed_members(log_liks, n, max_gap=0.6) == [4]
    assert failed_members(log_liks, n, max_gap=0.1) == []  # only 1 of 5 within 0.1 nats: no majority
    assert failed_members(log_liks[[0, 3]], n) == []  # 1 of 2 is not a majority
    assert failed_members(log_liks, n, max_gap=None) == []
    assert failed_members(torch.tensor([-5.0]), n) == []
    with pytest.raises(ValueError, match="max_gap"):
        failed_members(log_liks, n, max_gap=-1.0)
    with pytest.raises(ValueError, match="max_gap"):  # whatever the members
        failed_members(torch.tensor([-5.0]), n, max_gap=-1.0)


def test_a_bad_failed_gap_is_refused_before_any_fit():
    """``run_ensemble(failed_gap=-1)`` names the argument at once, not after the members' fits."""
    from pyro_node_uq.methods import run_ensemble

    problem = load_problem("chemical", num_train=2, num_test=2, num_extrapolation=2, num_times=11)
    with pytest.raises(ValueError, match="failed_gap must be >= 0"):
        run_ensemble(problem.default_model(), problem.train, num_steps=10**6, failed_gap=-1.0, progress_bar=False)


def test_a_member_in_a_poor_basin_is_left_out_with_a_warning():
    """Member 0, a MAP fit stopped after one step (its residuals are many times the noise), next to members fitted
    for 300 steps and polished: the ensemble warns, names its seed, keeps the other two members (unchanged) and notes every
    member's log-likelihood; with ``failed_gap=None`` all three stay."""
    from pyro_node_uq.methods import run_ensemble, run_map

    problem = load_problem("chemical", num_train=3, num_test=2, num_extrapolation=2, num_times=11)
    model = problem.default_model(R_hidden=(8,))
    bad = run_map(model, problem.train, num_steps=1, polish_iters=0, progress_bar=False)
    options = {"num_members": 3, "num_steps": 300, "polish_iters": 50, "progress_bar": False}
    with pytest.warns(UserWarning, match=r"seeds \[0\] are failed fits"):
        screened = run_ensemble(model, problem.train, warm_start=bad, **options)
    kept = run_ensemble(model, problem.train, warm_start=bad, failed_gap=None, **options)
    assert screened.num_draws == 2 and kept.num_draws == 3
    for name, value in screened.samples.items():
        assert torch.equal(value, kept.samples[name][1:])
    assert any("training log-likelihood per observation: 0:" in note for note in kept.notes)
