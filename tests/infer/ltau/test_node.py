"""LTAU on NODE trajectories: the training monitor, masked errors, the residual window."""
import math

import pyro
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import LTAU, LossTrajectoryRecorder
from pyro_node_uq.infer.ltau import ErrorCalibration, node_errors, node_keys
from pyro_node_uq.methods import run_map


def test_node_monitor_records_every_point_and_predicts():
    pyro.clear_param_store()
    problem = load_problem("chemical", num_train=2, num_test=2, num_extrapolation=2, num_times=11)
    model, ltau = problem.default_model(), LTAU(k=4)
    monitor = ltau.monitor(problem.train, every=2)
    with monitor:
        fit = run_map(model, problem.train, num_steps=5, callback=monitor, progress_bar=False)
    keys = node_keys(problem.train).reshape(-1)
    assert ltau.recorder.counts(keys).tolist() == [3] * len(keys)  # steps 0, 2, 4
    ltau.fit_node(model, fit.guide, problem.train)
    assert len(ltau.loc) == model.hidden_dim + 1 + problem.input_dim  # hidden state, time and inputs
    pred = ltau.predict_node(model, fit.guide, problem.test)
    assert pred.mean.shape == (2, 11) and pred.quantile(torch.tensor([0.5, 0.9])).shape == (2, 11, 2)
    assert torch.equal(pred.times, problem.test.t)
    # calibrating on whole validation trajectories may choose a memory; later predictions apply it
    cal = ltau.calibrate(pred[:1], torch.rand(1, 11, dtype=torch.float64), memories=(0.0, 1.0))
    cal.memory = 1.0
    again = ltau.predict_node(model, fit.guide, problem.test)
    assert again.memory == 1.0 and torch.allclose(again.mean, pred.with_calibration(cal).mean)
    assert not torch.allclose(again.mean, pred.with_calibration(ErrorCalibration(cal.scale, cal.distance_coef,
                                                                                  cal.grid, cal.values)).mean)
    plain = LTAU(k=4, inputs=False, recorder=ltau.recorder).fit_node(model, fit.guide, problem.train)
    assert len(plain.loc) == model.hidden_dim + 1
    # with model= and guide= the monitor evaluates the guide median itself (no messenger needed)
    other = LossTrajectoryRecorder()
    LTAU(recorder=other).monitor(problem.train, model=model, guide=fit.guide)(0)
    assert other.counts(keys).tolist() == [1] * len(keys)
    with pytest.raises(RuntimeError, match="no 'y_mean' was seen"):
        ltau.monitor(problem.train)(0)
    with pytest.raises(ValueError, match="model, guide"):
        ltau.monitor(problem.train, model=model)


def test_node_errors_respect_the_mask():
    problem = load_problem("chemical", num_train=2, num_times=5)
    split = problem.train
    split.mask = torch.ones(2, 5, dtype=torch.bool)
    split.mask[0, 3] = False
    errors, observed = node_errors(split.y + 0.1, split)
    assert observed.sum() == 9 and errors[0, 3] == 0
    assert torch.allclose(errors[observed], torch.full((9,), 0.1 * math.sqrt(2), dtype=errors.dtype))
    with pytest.raises(ValueError, match="y_mean: expected trailing shape"):
        node_errors(split.y[:, :3], split)


def test_node_error_window_separates_smooth_error_from_noise():
    """A constant model error 0.05 plus white noise 0.1: the windowed error is closer to 0.05 (w = 10)."""
    problem = load_problem("viscoelastic", num_train=64, num_times=51)
    split = problem.train
    gen = torch.Generator().manual_seed(0)
    y = split.y_true + 0.1 * torch.randn(split.y_true.shape, generator=gen, dtype=split.y_true.dtype)
    split.y = y
    pred = split.y_true + 0.05
    raw, _ = node_errors(pred, split)
    smooth, _ = node_errors(pred, split, window=10)
    middle = slice(10, 41)  # full windows of 21 points: the noise std shrinks to 0.1 / sqrt(21)
    assert abs(float(raw[:, middle].mean()) - 0.05) > 0.03
    assert abs(float(smooth[:, middle].mean()) - 0.05) < 0.01
    assert float(smooth[:, middle].std()) < 0.5 * float(raw[:, middle].std())
    with pytest.raises(ValueError, match="window"):
        node_errors(pred, split, window=-1)
