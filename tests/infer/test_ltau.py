import math

import pyro
import pytest
import torch
from scipy.stats import spearmanr

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import LTAU, LossTrajectoryRecorder
from pyro_node_uq.methods import run_map
from pyro_node_uq.infer.ltau import ErrorCalibration, calibration_error, node_errors, node_features, node_keys
from pyro_node_uq.infer.ltau.memory import memory_weights


def synthetic(mode="full", n=300, epochs=200, seed=0, **kwargs):
    """1-D latent feature x in [0, 1]; each sample's error per epoch ~ Exponential(mean = 0.1 + x)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    keys = torch.arange(n) * 7 + 3  # arbitrary stable ids
    ltau = LTAU(mode=mode, **kwargs)
    mean = 0.1 + x[:, 0]
    for _ in range(epochs):
        ltau.record(keys, -mean * torch.rand(n, generator=gen, dtype=torch.float64).log())
    return ltau.fit(x, keys), gen


# ---------------------------------------------------------------------------- recorder
@pytest.mark.parametrize("mode", ["full", "histogram"])
def test_recorder_counts_and_weights(mode):
    rec = LossTrajectoryRecorder(mode=mode, bins=32)
    rec.record(torch.tensor([5, 9, 2]), torch.tensor([1.0, 2.0, 3.0]))
    rec.record(torch.tensor([9]), torch.tensor([0.5]))  # a minibatch: only sample 9
    rec.record(torch.tensor([2, 9, 11]), torch.tensor([0.1, 0.2, 0.0]))
    assert rec.counts(torch.tensor([5, 9, 2, 11])).tolist() == [1, 3, 2, 1]
    rows = rec.rows(torch.tensor([9]))
    values, weights = rec.distributions(rows)
    assert torch.allclose(weights.sum(-1), torch.ones(1, dtype=torch.float64))
    assert torch.allclose(rec.means(rows), torch.tensor([(2.0 + 0.5 + 0.2) / 3], dtype=torch.float64))
    if mode == "full":
        kept = values[weights > 0].sort().values
        assert torch.allclose(kept, torch.tensor([0.2, 0.5, 2.0], dtype=torch.float64))


def test_histogram_memory_is_bounded():
    rec = LossTrajectoryRecorder(mode="histogram", bins=16, error_range=(1e-3, 10.0))
    for epoch in range(50):
        rec.record(torch.arange(4), torch.full((4,), 1.0 / (epoch + 1)))
    assert rec.state_dict()["store"].shape == (4, 16)
    # bins [1e-4, 1e-3), [1e-3, 1e-2), ... ; values outside the range land in the end bins
    rec = LossTrajectoryRecorder(mode="histogram", bins=4, error_range=(1e-4, 1.0))
    rec.record(torch.arange(6), torch.tensor([0.0, 1e-5, 2e-4, 2e-3, 0.5, 3.0]))
    assert rec.state_dict()["store"].argmax(-1).tolist() == [0, 0, 0, 1, 3, 3]


def test_recorder_errors_name_the_argument():
    rec = LossTrajectoryRecorder()
    with pytest.raises(ValueError, match="mode"):
        LossTrajectoryRecorder(mode="all")
    with pytest.raises(ValueError, match="error_range"):
        LossTrajectoryRecorder(mode="histogram", error_range=(1.0, 0.1))
    with pytest.raises(ValueError, match="errors: expected shape"):
        rec.record(torch.arange(3), torch.ones(2))
    with pytest.raises(ValueError, match="errors: expected finite"):
        rec.record(torch.arange(2), torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="errors: expected finite non-negative"):
        rec.record(torch.arange(2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="keys: each sample"):
        rec.record(torch.tensor([1, 1]), torch.ones(2))
    with pytest.raises(ValueError, match="keys: expected a 1-D"):
        rec.record(torch.ones(2, 2, dtype=torch.long), torch.ones(2))
    rec.record(torch.arange(2), torch.ones(2))
    with pytest.raises(KeyError, match="keys: 1 key"):
        rec.rows(torch.tensor([0, 7]))


# ---------------------------------------------------------------------------- distributions
@pytest.mark.parametrize("mode", ["full", "histogram"])
def test_distributions_are_proper(mode):
    ltau, gen = synthetic(mode, n=100, epochs=30, k=7)
    pred = ltau.predict(torch.rand(20, 1, generator=gen, dtype=torch.float64))
    grid = torch.logspace(-4, 1, 200, dtype=torch.float64)
    cdf = pred.cdf(grid)
    assert cdf.shape == (20, 200)
    assert (cdf >= 0).all() and (cdf <= 1).all()
    assert (cdf.diff(dim=-1) >= 0).all()
    assert torch.allclose(cdf[:, -1], torch.ones(20, dtype=torch.float64))  # every recorded error is below 10
    levels = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    q = pred.quantile(levels)
    assert (q.diff(dim=-1) >= 0).all()
    # F(Q(p)) >= p: the quantile is the smallest value whose CDF reaches p
    at_q = torch.stack([pred.cdf(q[:, j]) for j in range(len(levels))], -1)
    assert (at_q >= levels - 1e-9).all()
    assert (pred.mean >= q[:, 0]).all() and (pred.mean <= q[:, -1]).all()
    assert (pred.distance >= 0).all()


def test_exact_and_hnsw_agree():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(400, 4, generator=gen, dtype=torch.float64)
    keys = torch.arange(400)
    flat, hnsw = LTAU(k=8, index="flat"), LTAU(k=8, index="hnsw", hnsw_m=16, ef_search=200,
                                               recorder=None)
    errors = torch.rand(5, 400, generator=gen, dtype=torch.float64)
    for e in errors:
        flat.record(keys, e)
        hnsw.record(keys, e)
    flat.fit(x, keys)
    hnsw.fit(x, keys)
    test = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    (i1, d1), (i2, d2) = flat.neighbours(test), hnsw.neighbours(test)
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(i1, i2)) / i1.numel()
    assert recall >= 0.98
    assert torch.allclose(flat.predict(test).mean, hnsw.predict(test).mean, atol=0.02)
    assert torch.allclose(d1, d2, atol=0.05)


@pytest.mark.parametrize("mode", ["full", "histogram"])
def test_known_error_distribution_is_recovered(mode):
    """Errors ~ Exponential(mean 0.1 + x): LTAU's mean and quantiles match the closed forms (tolerance 12%)."""
    ltau, _ = synthetic(mode, k=10)
    x = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)[:, None]
    pred = ltau.predict(x)
    m = 0.1 + x[:, 0]
    assert torch.allclose(pred.mean, m, rtol=0.12)
    for p in (0.5, 0.9):
        assert torch.allclose(pred.quantile(p), -m * math.log(1 - p), rtol=0.12)
        assert torch.allclose(pred.cdf(-m * math.log(1 - p)), torch.full_like(m, p), atol=0.05)
    # an out-of-domain point is farther from its neighbours than every in-domain one
    far = ltau.predict(torch.tensor([[3.0]], dtype=torch.float64))
    assert float(far.distance) > 10 * float(pred.distance.max())


def test_calibration_recovers_a_scale_and_improves_coverage():
    ltau, gen = synthetic("full", k=10)
    def validation(n):
        x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        true = -2.5 * (0.1 + x[:, 0]) * torch.rand(n, generator=gen, dtype=torch.float64).log()  # 2.5x larger
        return ltau.predict(x), true
    val, val_err = validation(400)
    held, held_err = validation(400)
    before = calibration_error(held, held_err)
    cal = ltau.calibrate(val, val_err, method="scale", distance_scaling=False)
    assert cal.scale == pytest.approx(2.5, rel=0.15)
    for method in ("scale", "isotonic"):
        ltau.calibrate(val, val_err, method=method)
        after = calibration_error(held.with_calibration(ltau.calibration), held_err)
        assert before > 0.15 and after < 0.05, (method, before, after)
        calibrated = ltau.predict(held_err.new_tensor([[0.5]]))
        assert calibrated.calibration is ltau.calibration
        levels = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
        assert (calibrated.quantile(levels).diff(dim=-1) >= 0).all()
        assert (calibrated.cdf(torch.logspace(-3, 1, 50)).diff(dim=-1) >= 0).all()
    with pytest.raises(ValueError, match="method"):
        ltau.calibrate(val, val_err, method="platt")
    with pytest.raises(ValueError, match="errors: expected one error per point"):
        ltau.calibrate(val, val_err[:3])


def test_distance_scaling_is_chosen_when_errors_grow_out_of_domain():
    ltau, gen = synthetic("full", k=10)
    x = 1.5 * torch.rand(600, 1, generator=gen, dtype=torch.float64)  # one third beyond the training range
    pred = ltau.predict(x)
    err = -(0.1 + x[:, 0]) * (1 + 20 * pred.distance) * torch.rand(600, generator=gen, dtype=torch.float64).log()
    assert ErrorCalibration.fit(pred, err, method="scale").distance_coef > 0
    assert ErrorCalibration.fit(pred, err, distance_scaling=False).distance_coef == 0


# ---------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, index):
    ltau, gen = synthetic("histogram", n=80, epochs=10, k=5, index=index, inputs=False)
    x, t = torch.rand(30, 1, generator=gen, dtype=torch.float64), torch.linspace(0, 1, 6, dtype=torch.float64)
    ltau.calibrate(ltau.predict(x, (5, 6), t), torch.rand(5, 6, generator=gen, dtype=torch.float64),
                   memories=(0.5,))
    ltau.save(tmp_path / "ltau")
    loaded = LTAU.load(tmp_path / "ltau")
    assert loaded.calibration.memory == 0.5 and not loaded.inputs
    a, b = ltau.predict(x, (5, 6), t), loaded.predict(x, (5, 6), t)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.distance, b.distance)
    assert torch.equal(a.quantile(torch.tensor([0.1, 0.9])), b.quantile(torch.tensor([0.1, 0.9])))
    assert loaded.index_type == index and loaded.calibration.scale == ltau.calibration.scale
    assert torch.equal(loaded.recorder.keys, ltau.recorder.keys)


def test_failed_save_keeps_the_existing_file(tmp_path, monkeypatch):
    rec = LossTrajectoryRecorder()
    rec.record(torch.arange(3), torch.ones(3))
    path = tmp_path / "rec.pt"
    rec.save(path)
    before = path.read_bytes()
    rec.record(torch.arange(3), torch.zeros(3))

    def broken(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        rec.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rec.pt"]  # no temporary file left behind


def test_ltau_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        LTAU(k=0)
    with pytest.raises(ValueError, match="index must be"):
        LTAU(index="ivf")
    ltau = LTAU(k=3)
    with pytest.raises(RuntimeError, match="fit"):
        ltau.predict(torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match="fit"):
        ltau.save(tmp_path / "x")
    ltau.record(torch.arange(5), torch.ones(5))
    with pytest.raises(KeyError, match="keys"):
        ltau.fit(torch.zeros(5, 2), torch.arange(1, 6))
    with pytest.raises(ValueError, match="keys: expected one key per feature row"):
        ltau.fit(torch.zeros(4, 2), torch.arange(5))
    with pytest.raises(ValueError, match="features: contain NaN"):
        ltau.fit(torch.full((5, 2), float("nan")), torch.arange(5))
    ltau.fit(torch.randn(5, 2), torch.arange(5))
    with pytest.raises(ValueError, match="features: expected 2 features"):
        ltau.predict(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="q: expected levels"):
        ltau.predict(torch.zeros(1, 2)).quantile(1.5)
    with pytest.raises(FileNotFoundError, match="directory"):
        LTAU.load(tmp_path / "nothing")


# ---------------------------------------------------------------------------- NODE integration
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


# ---------------------------------------------------------------------------- trajectory memory
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
    rho = lambda c: float(spearmanr(held.with_calibration(c).mean.reshape(-1), held_err.reshape(-1))[0])  # noqa: E731
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
