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
    ("rate", torch.tensor([[-0.5]]), "rate must be >= 0"),
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


def test_modelled_infusions_resolve_from_their_parameters():
    """Codes -1 / -2 are a modelled rate / duration: :meth:`resolved` gives their rate and end from per-dose
    values with leading batch dims; boluses and given infusions keep their own; the schedule alone treats a
    modelled dose as neither a bolus nor an infusion."""
    d = DoseSchedule.from_lists([[0.0, 1.0, 5.0], [2.0]], [[100.0, 40.0, 30.0], [80.0]], rates=[[-1.0, 0.0, 10.0],
                                                                                              [-2.0]])
    value = torch.tensor([[[25.0, 9.0, 9.0], [4.0, 9.0, 9.0]], [[50.0, 9.0, 9.0], [8.0, 9.0, 9.0]]])  # (2, N, K)
    rate, end = d.resolved(value)
    assert rate[:, 0, 0].tolist() == [25.0, 50.0] and end[:, 0, 0].tolist() == [4.0, 2.0]
    assert rate[:, 1, 0].tolist() == [20.0, 10.0] and end[:, 1, 0].tolist() == [6.0, 10.0]
    assert rate[0, 0, 1:].tolist() == [0.0, 10.0] and end[0, 0, 1:].tolist() == [1.0, 8.0]
    assert d.modelled.tolist() == [[True, False, False], [True, False, False]]
    assert d.bolus_at(0.0, 1).abs().sum() == 0 and d.infusion_on(0.0, 1.0, 1).abs().sum() == 0
    with pytest.raises(ValueError, match="modelled infusions .* need a model with those parameters"):
        d.check(modelled=False)
    with pytest.raises(ValueError, match="a modelled one, -1 / -2\\) needs a positive amount"):
        d._replace(amount=torch.zeros(2, 3)).check()
