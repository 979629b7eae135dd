import math
import os

import pytest
from torch.distributions import constraints

from pyro_node_uq.compare import run_comparison
from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_autonormal, run_map
from pyro_node_uq.methods.convergence import (
    BudgetExhaustedWarning,
    StoppingRule,
    loss_slope,
)


def test_loss_slope_is_the_least_squares_slope():
    # points (0, 1), (1, 3), (2, 2): slope = sum((i - 1)(v - 2)) / sum((i - 1)^2) = (1 * -1 + 0 + 1 * 0) / 2
    assert loss_slope([9.0, 1.0, 3.0, 2.0], window=3) == pytest.approx(0.5)
    assert math.isnan(loss_slope([1.0], window=5))


def test_rule_stops_on_a_plateau_and_not_on_a_steady_fall():
    plateau = StoppingRule(max_steps=10_000, rtol=1e-3, window=20, patience=1)
    step = next(s for s in range(10_000) if plateau(s, -1000.0 + 500.0 * math.exp(-s / 50)))
    # window means of 500 e^{-s/50} over [a, a + 20) are ~416 e^{-a/50}; consecutive ones differ by
    # ~137 e^{-a/50}, below 1e-3 * 1000 from a = 246: the first check after that compares [260, 280) and [280, 300)
    assert step == 299
    # the default asks for two such checks in a row: one window later
    twice = StoppingRule(max_steps=10_000, rtol=1e-3, window=20)
    assert next(s for s in range(10_000) if twice(s, -1000.0 + 500.0 * math.exp(-s / 50))) == 319
    s = plateau.summary()
    assert s.converged is True and s.steps == step + 1 and "below" in s.reason
    falling = StoppingRule(max_steps=300, rtol=1e-3, window=20)
    assert not any(falling(k, 1000.0 - 5.0 * k) for k in range(300))
    s = falling.summary()
    assert s.converged is False and s.steps == 300 and s.slope == pytest.approx(-5.0)
    with pytest.warns(BudgetExhaustedWarning, match="fit x: step budget of 300 ran out"):
        falling.warn_if_unfinished("fit x")


def test_a_rising_loss_or_one_above_its_best_window_is_not_converged():
    # window means (window 10): 100, 50, then 150 (a jump up), 150, 150, then back down to 50 and level
    values = [100.0] * 10 + [50.0] * 10 + [150.0] * 30 + [50.0] * 20
    rule = StoppingRule(max_steps=1000, rtol=1e-3, window=10, patience=1)
    stops = [k for k, v in enumerate(values) if rule(k, v)]
    # not at 29 (it rose), not at 39 or 49 (level, but 3x worse than the best window): at 69, level at the best
    assert stops == [69]
    assert rule.summary().converged is True


def test_a_chance_pause_in_a_falling_loss_stops_only_without_patience():
    # window means (window 10) 100, 90, 90 (two noisy windows that happen to agree), then 80, 70, 60, ...
    means = [100.0, 90.0, 90.0] + [80.0 - 10.0 * k for k in range(6)]
    values = [m for m in means for _ in range(10)]
    hasty = StoppingRule(max_steps=1000, rtol=1e-3, window=10, patience=1)
    assert [k for k, v in enumerate(values) if hasty(k, v)] == [29]
    patient = StoppingRule(max_steps=1000, rtol=1e-3, window=10)
    assert not any(patient(k, v) for k, v in enumerate(values))
    assert patient.summary().converged is False
    with pytest.raises(ValueError, match="patience"):
        StoppingRule(10, patience=0)


def test_rule_respects_min_steps_and_rtol_zero():
    rule = StoppingRule(max_steps=1000, rtol=1e-3, window=10, min_steps=100)
    assert not any(rule(k, 5.0) for k in range(99))
    assert rule(99, 5.0)
    fixed = StoppingRule(max_steps=50, rtol=0.0, window=10)
    assert not any(fixed(k, 5.0) for k in range(50))
    assert fixed.summary().converged is None
    with pytest.raises(ValueError, match="stop_rtol"):
        StoppingRule(10, rtol=-1)


@pytest.fixture(scope="module")
def tiny():
    return load_problem("chemical", num_train=3, num_test=2, num_extrapolation=2, num_times=11)


def test_planted_small_budget_is_reported_in_the_result_and_warned(tiny):
    with pytest.warns(BudgetExhaustedWarning, match="map: step budget of 30 ran out"):
        fit = run_map(tiny.default_model(R_hidden=(4,)), tiny.train, num_steps=30, num_starts=1,
                      record_errors=False, progress_bar=False)
    assert fit.converged is False and fit.steps_used == 30 and len(fit.losses) == 30
    assert "budget" in fit.stop_reason and fit.loss_slope < 0  # still falling
    with pytest.warns(BudgetExhaustedWarning, match="autonormal"):
        vi = run_autonormal(tiny.default_model(R_hidden=(4,)), tiny.train, warm_start=fit, num_steps=12,
                            elbo_particles=0, progress_bar=False)
    assert vi.converged is False and vi.steps_used == 12


def test_a_converged_fit_stops_early_and_says_so(tiny):
    # a loose tolerance: the window-mean loss improves by less than 50% of its size well before 400 steps
    fit = run_map(tiny.default_model(R_hidden=(4,)), tiny.train, num_steps=400, num_starts=1, record_errors=False,
                  stop_rtol=0.5, stop_window=10, progress_bar=False)
    assert fit.converged is True and fit.steps_used < 400 and len(fit.losses) == fit.steps_used


def test_report_marks_the_planted_budget_unconverged(tiny, tmp_path):
    out = str(tmp_path / "cmp")
    with pytest.warns(BudgetExhaustedWarning):
        rows = run_comparison(tiny, ["map", "autonormal"], out=out, quick=True, num_samples=4, idata_samples=4,
                              progress_bar=False, overrides={"map": {"num_steps": 20},
                                                             "autonormal": {"num_steps": 8}})
    by = {r["method"]: r for r in rows}
    assert by["map"]["converged"] is False and by["map"]["steps_used"] == 20
    assert by["autonormal"]["converged"] is False and by["autonormal"]["start"] == "map"
    assert by["autonormal"]["start_test_nll"] is not None and by["autonormal"]["start_train_loss"] < 1e9
    report = open(os.path.join(out, "report.md")).read()  # noqa: SIM115
    assert "**Not converged**" in report and "map, autonormal" in report
    assert "| map | **NO** (budget ran out) | 20 |" in report
    assert "NOT CONVERGED: step budget of 20 ran out" in report


def test_a_learned_noise_scale_running_away_from_its_start_is_warned():
    import torch

    from pyro_node_uq.methods.convergence import NoiseRunawayWarning, noise_growth

    model = load_problem("chemical", num_train=2).default_model(scale="learned")
    state = {"params": {"sigma": torch.tensor([0.5, 0.5]).log()}, "constraints": {"sigma": constraints.positive}}
    grown = {"params": {"sigma": torch.tensor([0.5, 8.0]).log()}, "constraints": {"sigma": constraints.positive}}
    with pytest.warns(NoiseRunawayWarning, match=r"fit: the learned noise scale grew 16-fold"):
        assert noise_growth("fit", model, state, grown) == pytest.approx(16.0)
    assert noise_growth("fit", model, state, state) == pytest.approx(1.0)
    assert noise_growth("fit", load_problem("chemical", num_train=2).default_model(), state, grown) is None
