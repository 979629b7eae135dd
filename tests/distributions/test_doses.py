"""DoseSchedule: padding, validation naming the field, breakpoints, bolus increments and infusion rates."""
import pytest
import torch

from pyro_node_uq.distributions.doses import DoseSchedule


def schedule():
    return DoseSchedule.from_lists([[0.0, 12.0], [1.0]], [[100.0, 50.0], [80.0]], [[0, 1], [0]],
                                   rates=[[0.0, 0.0], [40.0]])


def test_from_lists_pads_with_mask():
    d = schedule()
    assert d.time.shape == (2, 2) and d.time.dtype == torch.float64 and d.compartment.dtype == torch.long
    assert d.mask.tolist() == [[True, True], [True, False]]
    assert d.end().tolist()[1][0] == 3.0


def test_breakpoints_hold_bolus_times_and_infusion_ends():
    assert schedule().breakpoints().tolist() == [0.0, 1.0, 3.0, 12.0]


def test_bolus_and_infusion_per_unit_and_compartment():
    d = schedule()
    assert d.bolus_at(12.0, 2).tolist() == [[0.0, 50.0], [0.0, 0.0]]
    assert d.bolus_at(0.0, 2).tolist() == [[100.0, 0.0], [0.0, 0.0]]
    assert d.infusion_on(1.0, 3.0, 2).tolist() == [[0.0, 0.0], [40.0, 0.0]]
    assert d.infusion_on(3.0, 12.0, 2).abs().sum() == 0


@pytest.mark.parametrize("field,value,match", [
    ("rate", torch.tensor([[-1.0]]), "rate must be >= 0"),
    ("compartment", torch.tensor([[0.5]]), "compartment must be an integer"),
    ("time", torch.tensor([[float("nan")]]), "time has non-finite"),
    ("amount", torch.zeros(2, 2), "amount must be a tensor of shape"),
])
def test_bad_fields_are_named(field, value, match):
    d = DoseSchedule.from_lists([[0.0]], [[1.0]])
    with pytest.raises(ValueError, match=match):
        d._replace(**{field: value}).check()


def test_compartment_out_of_range_and_unit_count():
    d = DoseSchedule.from_lists([[0.0]], [[1.0]], [[3]])
    with pytest.raises(ValueError, match="hidden_dim=2"):
        d.check(hidden_dim=2)
    with pytest.raises(ValueError, match="expected 4 units"):
        schedule().check(num_units=4)
    with pytest.raises(ValueError, match="compartments must have one list per unit"):
        DoseSchedule.from_lists([[0.0]], [[1.0]], [[0, 1]])
