"""LTAU: exact and HNSW search agree, a known error law is recovered, saves round-trip and never corrupt, errors."""
import math

import pytest
import torch

from pyro_node_uq.infer import LTAU, LossTrajectoryRecorder
from tests.infer.ltau.synthetic import synthetic


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
