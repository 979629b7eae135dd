"""Warm-up adaptation (:mod:`pyro_node_uq.infer.mcmc.adaptation`): the schedule and the updates against
hand-computed values and Pyro's own dual averaging and Welford estimators, and the step size it converges to."""
import itertools
import math

import pytest
import torch
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.welford import WelfordCovariance

from pyro_node_uq.infer.mcmc import adaptation


def test_windows_by_hand():
    # 100 steps: a 15-step buffer, a first window of 25 (ends at 40), then the rest up to the 10-step end buffer
    assert adaptation.windows(100) == (40, 90)
    # 1000 steps: buffer 150, windows of 25, 50, 100; the next (200) leaves less than twice its length before
    # the end buffer, so it is stretched to step 900
    assert adaptation.windows(1000) == (175, 225, 325, 900)
    assert adaptation.windows(19) == ()


@pytest.mark.parametrize("warmup", [20, 37, 150, 999])
def test_windows_cover_the_middle_of_warm_up(warmup):
    ends = adaptation.windows(warmup)
    assert list(ends) == sorted(set(ends)) and ends[-1] == warmup - max(int(0.1 * warmup), 1)


def test_dual_averaging_matches_pyro():
    ours, theirs = adaptation.dual_averaging(math.log(10 * 0.3)), DualAveraging(prox_center=math.log(10 * 0.3))
    for g in (0.5, -0.2, 0.1, 0.3, -0.4, 0.0, 0.25):
        ours = adaptation.dual_averaging_step(ours, g)
        theirs.step(g)
        assert (ours.x, ours.x_avg) == pytest.approx(theirs.get_state(), rel=1e-15)


def test_one_dual_averaging_step_by_hand():
    # t = 1: gbar = g / 11, x = mu - 1 / 0.05 * gbar, xbar = x (weight 1)
    state = adaptation.dual_averaging_step(adaptation.dual_averaging(0.0), 0.11)
    assert state.g_avg == pytest.approx(0.01) and state.x == pytest.approx(-0.2) and state.x_avg == state.x


def test_welford_variances_match_pyro():
    rows = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    ref = WelfordCovariance(diagonal=True)
    for row in rows:
        ref.update(row)
    ours = adaptation.welford_update(adaptation.Welford(), rows)
    assert torch.allclose(adaptation.welford_variance(ours), ref.get_covariance(regularize=True), rtol=1e-12)
    # Stan's shrinkage by hand: n / (n + 5) * var + 1e-3 * 5 / (n + 5)
    expected = 7 / 12 * rows.var(0) + 1e-3 * 5 / 12
    assert torch.allclose(adaptation.welford_variance(ours), expected, rtol=1e-12)
    with pytest.raises(RuntimeError, match="fewer than two samples"):
        adaptation.welford_variance(adaptation.welford_update(adaptation.Welford(), rows[:1]))


def test_a_window_end_sets_the_variances_and_restarts_dual_averaging():
    warmup = 100  # windows end at steps 40 and 90
    state = adaptation.init(0.5, torch.ones(2), warmup)
    rows = torch.randn(40, 3, 2, generator=torch.Generator().manual_seed(1))  # 3 particles per step
    for t in range(1, 41):
        state = adaptation.update(state, t, rows[t - 1], 0.5, warmup_steps=warmup, target_accept_prob=0.574)
    window = rows.reshape(-1, 2)
    n = window.shape[0]
    assert torch.allclose(state.variances, n / (n + 5) * window.var(0) + 1e-3 * 5 / (n + 5))
    assert state.windows == (90,) and state.welford == adaptation.Welford() and state.dual.t == 1


def test_without_variance_adaptation_only_the_step_size_moves():
    state = adaptation.init(0.5, torch.ones(2), 100, adapt_variances=False)
    for t in range(1, 101):
        state = adaptation.update(state, t, torch.zeros(1, 2), 0.9, warmup_steps=100, target_accept_prob=0.574)
    assert torch.equal(state.variances, torch.ones(2)) and state.windows == ()
    assert state.step_size == pytest.approx(math.exp(state.dual.x_avg))  # the average after the last step
    assert state.step_size > 0.5  # accepting more than the target: larger steps


def test_step_size_reaches_the_target_acceptance():
    """With acceptance ``exp(-eps)`` the step size converges to ``-log(target)``."""
    target, state = 0.6, adaptation.init(1.0, torch.ones(1), 2000, adapt_variances=False)
    for t in range(1, 2001):
        state = adaptation.update(state, t, None, math.exp(-state.step_size), warmup_steps=2000,
                                  target_accept_prob=target)
    assert state.step_size == pytest.approx(-math.log(target), rel=0.02)


def test_max_growth_bounds_each_warm_up_step_size_and_the_average():
    """Always accepting, dual averaging's first iterate jumps far above ten times the start; with ``max_growth=2``
    each warm-up step size is at most twice the one before, and the final average stays below the last of them."""
    free = capped = adaptation.init(0.25, torch.ones(1), 10, adapt_variances=False)
    free = adaptation.update(free, 1, None, 1.0, warmup_steps=10, target_accept_prob=0.574)
    assert free.step_size > 10 * 0.25
    sizes = [capped.step_size]
    for t in range(1, 11):
        capped = adaptation.update(capped, t, None, 1.0, warmup_steps=10, target_accept_prob=0.574, max_growth=2.0)
        sizes.append(capped.step_size)
    assert all(b <= 2.0 * a * (1 + 1e-12) for a, b in itertools.pairwise(sizes[:-1]))
    assert sizes[-2] == pytest.approx(0.25 * 2 ** 9) and sizes[-1] <= sizes[-2]


def test_dense_welford_is_the_sample_covariance():
    rows = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) @ torch.tensor(
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 2.0]], dtype=torch.float64)
    cov = adaptation.welford_variance(adaptation.welford_update(adaptation.Welford(), rows, dense=True))
    n = rows.shape[0]
    expected = n / (n + 5) * torch.cov(rows.T) + 1e-3 * 5 / (n + 5) * torch.eye(3, dtype=torch.float64)
    assert torch.allclose(cov, expected)


def test_a_block_structure_estimates_only_its_blocks():
    """Blocks {0, 1} dense and {2} diagonal: the window's covariance keeps the (0, 1) entries, zeros the rest."""
    blocks = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    state = adaptation.init(0.5, torch.ones(3), 100, blocks=blocks)
    assert torch.equal(state.variances, torch.eye(3))
    rows = torch.randn(40, 2, 3, generator=torch.Generator().manual_seed(4))
    rows[..., 2] += rows[..., 0]  # correlated with site 0, outside its block
    for t in range(1, 41):
        state = adaptation.update(state, t, rows[t - 1], 0.5, warmup_steps=100, target_accept_prob=0.574)
    window = rows.reshape(-1, 3)
    n = window.shape[0]
    full = n / (n + 5) * torch.cov(window.T) + 1e-3 * 5 / (n + 5) * torch.eye(3)
    assert torch.allclose(state.variances, torch.where(blocks, full, torch.zeros(())), atol=1e-6)
    assert state.variances[0, 1] != 0 and state.variances[0, 2] == 0
