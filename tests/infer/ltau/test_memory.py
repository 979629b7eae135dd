"""Trajectory memory: causal averages, recovered memory improves the ranking, whole trajectories needed."""
import math

import pytest
import torch
from scipy.stats import spearmanr

from pyro_node_uq.infer.ltau import ErrorCalibration
from pyro_node_uq.infer.ltau.memory import memory_weights
from tests.infer.ltau.synthetic import synthetic


def test_memory_weights_are_causal_averages():
    t = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    assert torch.equal(memory_weights(t, 0), torch.eye(4, dtype=torch.float64))
    w = memory_weights(t, 1.0)
    assert torch.allclose(w.sum(-1), torch.ones(4, dtype=torch.float64))
    assert (w.triu(1) == 0).all()  # no weight on the future
    assert w[3, 2] / w[3, 1] == pytest.approx(math.exp(0.5))  # exp(-(t_j - t_i) / tau), t_2 - t_1 = 0.5
    assert torch.allclose(memory_weights(t, math.inf)[2], torch.tensor([1 / 3] * 3 + [0], dtype=torch.float64))
    with pytest.raises(ValueError, match="memory"):
        memory_weights(t, -1)
    with pytest.raises(ValueError, match="times"):
        memory_weights(t.flip(0), 1.0)


def trajectories(ltau, gen, n, t):
    """Feature paths x(t) in [0, 1] and errors that remember the past: e = (W_0.6 (0.1 + x)) * Exponential(1)."""
    phase = 2 * math.pi * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    freq = 0.5 + 2 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    x = 0.5 + 0.5 * torch.sin(freq * t + phase)
    pred = ltau.predict(x.reshape(-1, 1), batch_shape=x.shape, times=t)
    level = (0.1 + x) @ memory_weights(t, 0.6).T
    return pred, -level * torch.rand(x.shape, generator=gen, dtype=torch.float64).log()


def test_memory_is_recovered_and_improves_the_ranking():
    ltau, gen = synthetic("full", epochs=40, k=10)
    t = torch.linspace(0, 3, 30, dtype=torch.float64)
    val, val_err = trajectories(ltau, gen, 80, t)
    held, held_err = trajectories(ltau, gen, 80, t)
    cal = ltau.calibrate(val, val_err)  # default candidates: 0, 0.075, 0.15, 0.3, 0.6, 1.2, inf
    assert cal.memory == pytest.approx(0.6)
    no_memory = ErrorCalibration.fit(val, val_err, memories=(0.0,))
    rho = lambda c: float(spearmanr(held.with_calibration(c).mean.reshape(-1), held_err.reshape(-1))[0])
    assert rho(cal) > rho(no_memory) + 0.05, (rho(cal), rho(no_memory))
    # the calibrated (smoothed) distributions are proper and their mean is the smoothed mean, scaled
    smoothed = held.with_calibration(ErrorCalibration(memory=0.6))
    assert torch.allclose(smoothed.mean, held.mean @ memory_weights(t, 0.6).T)
    levels = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    assert (held.with_calibration(cal).quantile(levels).diff(dim=-1) >= 0).all()
    assert torch.allclose(held.with_calibration(cal).with_calibration(None).mean, held.mean)


def test_memory_needs_whole_trajectories():
    ltau, gen = synthetic("full", n=100, epochs=20, k=5)
    t = torch.linspace(0, 1, 6, dtype=torch.float64)
    pred = ltau.predict(torch.rand(24, 1, generator=gen, dtype=torch.float64), batch_shape=(4, 6), times=t)
    assert pred[:2].times is t and pred[1:3, :].times is t
    assert pred[:, :3].times is None and pred[0, 2].times is None
    cal = ErrorCalibration(memory=1.0)
    smoothed = pred.with_calibration(cal)
    assert torch.allclose(smoothed[1:3].mean, pred[1:3].with_calibration(cal).mean)
    with pytest.raises(ValueError, match="no times"):
        pred[:, :3].with_calibration(cal)
    with pytest.raises(ValueError, match="no times"):
        ltau.predict(torch.rand(5, 1, dtype=torch.float64)).with_calibration(cal)
    with pytest.raises(ValueError, match="times: expected"):
        ltau.predict(torch.rand(24, 1, dtype=torch.float64), batch_shape=(4, 6), times=t[:5])
