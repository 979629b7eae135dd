"""LossTrajectoryRecorder: counts, weights, bounded histogram memory, errors naming the argument."""
import pytest
import torch

from pyro_node_uq.infer import LossTrajectoryRecorder


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


@pytest.mark.parametrize("keys", [[0.5, 1.0], [0.0, float("nan")], [True, False], [1e300, 2.0]])
def test_non_integer_keys_are_refused_not_truncated(keys):
    """Key 0.5 used to become sample 0 (merged with it); ids must be whole numbers."""
    rec = LossTrajectoryRecorder()
    with pytest.raises((ValueError, TypeError), match="keys: expected integer sample ids"):
        rec.record(torch.tensor(keys), torch.ones(2))
    assert rec.num_samples == 0


def test_whole_float_keys_are_accepted():
    rec = LossTrajectoryRecorder()
    rec.record(torch.tensor([3.0, 4.0]), torch.ones(2))
    assert rec.keys.tolist() == [3, 4]
