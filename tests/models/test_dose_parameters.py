"""Modelled infusion rates and durations as structure parameters: names, the extended structure, resolution."""
import pytest
import torch

from pyro_node_uq.distributions import DoseSchedule
from pyro_node_uq.models.dose_parameters import (
    dose_parameter_names,
    modelled_infusions,
    with_dose_parameters,
)
from pyro_node_uq.models.structures import get_structure


def _doses():
    return DoseSchedule.from_lists([[0.0, 1.0, 3.0], [2.0]], [[100.0, 50.0, 30.0], [80.0]], [[0, 1, 1], [0]],
                                   [[-2.0, -1.0, 0.0], [-2.0]])


def test_names_and_extended_structure():
    assert dose_parameter_names(_doses()) == ["D1", "R2"] and dose_parameter_names(None) == []
    s = with_dose_parameters(get_structure("one_compartment_oral"), {"D1": 2.0, "R2": 40.0})
    assert s.param_names == ("CL", "V", "ka", "D1", "R2") and s.solves_infusions
    assert with_dose_parameters(get_structure("one_compartment_iv"), None).param_names == ("CL", "V")
    for bad in ("D3", "X1", "D0", "CL"):
        with pytest.raises(ValueError, match=f"dose_parameters: expected names .* got '{bad}'"):
            with_dose_parameters(get_structure("one_compartment_oral"), {bad: 1.0})


def test_resolution_per_member_and_dose_scale():
    """Each modelled dose takes its own state's parameter, per batch member and unit; a rate is in the data's
    amount units (with amounts scaled by 10 the infusion still lasts amount / R)."""
    d = _doses()
    theta = {"D1": torch.tensor([[2.0, 4.0], [1.0, 8.0]]), "R2": torch.tensor([[25.0, 1.0], [5.0, 1.0]])}
    rate, end = modelled_infusions(d, theta)
    assert rate.shape == (2, 2, 3)
    assert rate[:, 0, :2].tolist() == [[50.0, 25.0], [100.0, 5.0]] and end[:, 0, :2].tolist() == [[2.0, 3.0],
                                                                                                 [1.0, 11.0]]
    assert rate[:, 1, 0].tolist() == [20.0, 10.0] and end[:, 1, 0].tolist() == [6.0, 10.0]
    scaled = d._replace(amount=d.amount * 10)
    rate10, end10 = modelled_infusions(scaled, theta, dose_scale=10.0)
    assert torch.allclose(end10, end) and torch.allclose(rate10, 10 * rate)
    with pytest.raises(ValueError, match=r"need the parameters \['R2'\] .* which structure 'x' lacks"):
        modelled_infusions(d, {"D1": theta["D1"]}, structure="structure 'x'")
