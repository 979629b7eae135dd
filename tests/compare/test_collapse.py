import pytest
import torch

from pyro_node_uq.compare.collapse import CollapseWarning, collapse_notes, mean_spread


def _pred(sd, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"test": {"y_mean": sd * torch.randn(400, 5, 6, 2, generator=g)}}


def test_mean_spread_is_the_draws_standard_deviation_averaged_over_points():
    y = torch.tensor([[[[1.0]], [[2.0]]], [[[3.0]], [[6.0]]]])  # two draws, two points
    assert mean_spread({"y_mean": y}) == pytest.approx((2 ** 0.5 + 8 ** 0.5) / 2)
    assert mean_spread({"y_mean": y[:1]}) == 0.0  # one draw: a point estimate


def test_a_method_far_narrower_than_the_reference_is_flagged_with_its_ratio():
    preds = {"autonormal": _pred(1.0), "svgd": _pred(0.1, 1), "ensemble": _pred(0.5, 2), "map": _pred(0.0)}
    with pytest.warns(CollapseWarning, match="svgd"):
        notes = collapse_notes(preds, {"autonormal", "svgd", "ensemble"})
    assert set(notes) == {"svgd"}  # the ensemble at 0.5x passes; MAP is a point estimate, not checked
    assert "0.10x autonormal's" in notes["svgd"]


def test_nothing_is_checked_without_the_reference_or_with_a_zero_reference_spread():
    assert collapse_notes({"svgd": _pred(0.1)}, {"svgd"}) == {}
    assert collapse_notes({"autonormal": _pred(0.0), "svgd": _pred(0.1)}, {"autonormal", "svgd"}) == {}
