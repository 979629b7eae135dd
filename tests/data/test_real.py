"""The measured data sets: theophylline and hare-lynx, their masks, splits and provenance."""
import pytest

from pyro_node_uq.data import load_problem


def test_theophylline_masks_and_provenance():
    p = load_problem("theophylline")
    train, test, extra = p.train, p.test, p.extrapolation
    assert len(train) == 8 and len(test) == 4 and train.ids.tolist() == list(range(1, 9))
    assert int(test.mask.sum() + extra.mask.sum()) == 44  # 11 samples for each of 4 test subjects
    assert (test.mask & extra.mask).sum() == 0
    assert float(train.y[train.mask].max()) == pytest.approx(11.4, abs=0.01)  # subject 1 peak (mg/L)


def test_hare_lynx_splits():
    p = load_problem("hare_lynx")
    assert p.train.mask.sum() == 15 and p.test.mask.sum() == 3 and p.extrapolation.mask.sum() == 3
    assert p.train.y[0, 0].tolist() == pytest.approx([3.0, 0.4])
