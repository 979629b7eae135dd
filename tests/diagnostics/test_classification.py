"""Classification scores against hand-computed values and their limits."""
import math

import pytest
import torch

from pyro_node_uq.diagnostics import (
    classification_scores,
    expected_calibration_error,
    predictive_entropy,
    reliability,
)


def test_scores_of_a_hand_computed_case():
    """Two draws whose mean is [[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]] against labels [0, 0, 1]."""
    probs = torch.tensor([[[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]], [[0.6, 0.4], [0.6, 0.4], [0.5, 0.5]]],
                         dtype=torch.float64)
    out = classification_scores(probs, torch.tensor([0, 0, 1]))
    assert out["accuracy"] == pytest.approx(1 / 3)  # argmax of a tie is the first class
    assert out["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.4) + math.log(0.5)) / 3)
    assert out["brier"] == pytest.approx((2 * 0.3 ** 2 + 2 * 0.6 ** 2 + 2 * 0.5 ** 2) / 3)
    # bins (15 wide): 0.7 -> 10, 0.6 -> 9, 0.5 -> 7; accuracies 1, 0, 0
    assert out["ece"] == pytest.approx((0.3 + 0.6 + 0.5) / 3)
    torch.testing.assert_close(predictive_entropy(probs)[2], torch.tensor(math.log(2), dtype=torch.float64))


def test_calibrated_predictions_have_small_ece():
    gen = torch.Generator().manual_seed(0)
    conf = 0.5 + 0.5 * torch.rand(20000, generator=gen, dtype=torch.float64)
    labels = (torch.rand(20000, generator=gen, dtype=torch.float64) > conf).long()  # class 0 with prob conf
    probs = torch.stack([conf, 1 - conf], -1)[None]
    assert expected_calibration_error(probs, labels) < 0.02
    assert sum(share for _, _, share in reliability(probs, labels)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"probs: expected draws \(S, N, C\) for 3 labels"):
        classification_scores(probs, torch.tensor([0, 1, 0]))
