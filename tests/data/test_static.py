"""Static problems: shapes, dtypes, labels from the stated rule, splits that are out of the training domain, and
their default SDE-BNN."""
import math

import pytest
import torch

from pyro_node_uq.data import PROBLEMS, StaticSplit, load_problem


def test_gap_regression_splits_cover_data_and_gap():
    problem = load_problem("gap_regression", dtype=torch.float64)
    train, extra = problem.train.x[:, 0], problem.extrapolation.x[:, 0]
    assert ((train >= -1.8) & (train <= 1.8) & ~((train > -0.4) & (train < 0.6))).all()
    assert ((extra > -0.4) & (extra < 0.6)).any() and (extra.abs() > 1.8).any()
    assert not ((extra >= -1.8) & (extra <= -0.4) | (extra >= 0.6) & (extra <= 1.8)).any()
    truth = torch.sin(2.5 * problem.test.x) + 0.3 * problem.test.x ** 2
    torch.testing.assert_close(problem.test.y_true, truth)
    noise = (problem.test.y - truth).std()
    assert abs(noise - 0.08) < 0.03  # 48 draws of N(0, 0.08^2)
    model = problem.default_model()
    assert (model.input_dim, model.output_dim, model.likelihood) == (1, 1, "regression")


def test_spirals_labels_follow_the_rule_and_extrapolate_in_radius():
    problem = load_problem("spirals", flip=0.0)
    for name, split in problem.splits.items():
        r, a = split.x.norm(dim=-1), torch.atan2(split.x[:, 1], split.x[:, 0])
        rule = (torch.remainder(a + 1.5 * r, 2 * math.pi) / (2 * math.pi / 3)).long().clamp(max=2)
        assert split.y.dtype == torch.int64 and (split.y == rule).float().mean() > 0.99, name  # float32 rounding
        assert (r <= 2.0 + 1e-5).all() if name != "extrapolation" else (r >= 2.5 - 1e-5).all()
    assert set(problem.train.y.tolist()) == {0, 1, 2}
    flipped = load_problem("spirals")
    assert 0 < (flipped.train.y != problem.train.y).float().mean() < 0.1  # flip=0.05, two thirds change
    assert problem.default_model().likelihood == "classification" and problem.obs_dim == 3


def test_static_split_moves_and_bad_input():
    split = StaticSplit(x=torch.zeros(3, 2), y=torch.tensor([0, 1, 2]))
    moved = split.to(dtype=torch.float64)
    assert moved.x.dtype == torch.float64 and moved.y.dtype == torch.int64 and len(moved) == 3
    assert split.mask is None and split.h_true is None and split.kwargs == {}
    with pytest.raises(ValueError, match="flip: expected a share"):
        PROBLEMS["spirals"](flip=2.0)
    with pytest.raises(ValueError, match=r"split 'train': x must be \(N, 1\)"):
        load_problem("gap_regression").__class__(**{**load_problem("gap_regression").__dict__,
                                                     "train": StaticSplit(x=torch.zeros(4, 2), y=torch.zeros(4, 1))})
