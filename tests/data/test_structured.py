"""structured_problem: the grey-box configuration of a dosing problem, with modelled rates and durations."""
import pandas as pd
import pytest

from pyro_node_uq.data import events_problem
from pyro_node_uq.data.structured import structured_problem


def _table():
    """Eight one-compartment IV units, half with a modelled duration (RATE -2), half a modelled rate (RATE -1)."""
    rows = []
    for i in range(1, 9):
        rows.append({"ID": i, "TIME": 0, "DV": ".", "AMT": 100, "EVID": 1, "RATE": -2 if i % 2 else -1,
                     "CMT": 1})
        rows += [{"ID": i, "TIME": s, "DV": 5.0 - 0.4 * s, "AMT": 0, "EVID": 0, "RATE": 0, "CMT": 1} for s in (0.5, 1, 2, 4, 8)]
    return pd.DataFrame(rows)


def test_modelled_doses_add_their_parameters():
    p = structured_problem(events_problem(_table()))
    kw = p.model_kwargs
    assert kw["structure"] == "one_compartment_iv" and sorted(kw["dose_parameters"]) == ["D1", "R1"]
    assert kw["dose_parameters"]["D1"] > 0 and kw["dose_parameters"]["R1"] == pytest.approx(
        100 / kw["dose_parameters"]["D1"])
    from pyro_node_uq.models import GreyBoxNODEModel
    model = GreyBoxNODEModel(**kw)
    assert model.structure.param_names == ("CL", "V", "D1", "R1") and "D1" in model.effects
    assert "dose_parameters" not in structured_problem(events_problem(_table().assign(RATE=0))).model_kwargs


def test_the_absorption_guess_times_the_peak_from_the_dose_before_it():
    """Repeated oral doses at 0, 12 and 24 h, the highest level 1 h after the last: the guessed ka is 1/h from that
    hour, not from the 25 h since the first dose (which made the prior favour a flip-flop fit)."""
    rows = []
    for i in (1, 2, 3, 4):
        rows += [{"ID": i, "TIME": d, "DV": ".", "AMT": 100, "EVID": 1, "CMT": 2} for d in (0.0, 12.0, 24.0)]
        rows += [{"ID": i, "TIME": s, "DV": c, "AMT": 0, "EVID": 0, "CMT": 1}
                 for s, c in ((1.0, 2.0), (13.0, 3.0), (25.0, 4.0), (30.0, 2.5))]
    typical = structured_problem(events_problem(pd.DataFrame(rows), test_fraction=0.25)).model_kwargs["typical"]
    assert typical["ka"] == pytest.approx(1.0)
    assert typical["V"] == pytest.approx(100 / 4.0)  # the first dose over the peak level


def test_residuals_are_student_t_by_default_and_the_option_is_checked():
    """A structured model's residuals are Student-t (4 degrees of freedom) unless ``noise="normal"``; a wrong
    option fails in ``structured_problem``, naming it."""
    from types import SimpleNamespace

    from pyro_node_uq.cli.compare import _with_structure
    from pyro_node_uq.models import GreyBoxNODEModel

    base = events_problem(_table().assign(RATE=0))
    model = GreyBoxNODEModel(**structured_problem(base).model_kwargs)
    assert (model.law.noise, model.law.df) == ("studentt", 4.0)
    assert GreyBoxNODEModel(**structured_problem(base, noise="normal").model_kwargs).law.noise == "normal"
    with pytest.raises(ValueError, match="noise: expected one of"):
        structured_problem(base, noise="cauchy")
    with pytest.raises(ValueError, match="df"):
        structured_problem(base, df=0.0)
    args = lambda structure, noise: SimpleNamespace(structure=structure, correction="none", noise=noise)
    assert _with_structure(base, args("auto", None)).model_kwargs["noise"] == "studentt"
    assert _with_structure(base, args("auto", "normal")).model_kwargs["noise"] == "normal"
    assert "noise" not in _with_structure(base, args("none", None)).model_kwargs  # the NODE keeps its default
    assert _with_structure(base, args("none", "studentt")).model_kwargs["noise"] == "studentt"


def test_a_network_correction_corrects_the_parameters_from_the_concentrations():
    """With a correction the recommended grey-box model corrects every unit's clearance and absorption (not its
    volume) as functions of its concentrations; without one it is the mechanistic model alone."""
    from pyro_node_uq.data.pk import theophylline_table

    base = events_problem(theophylline_table("mg"))
    model = structured_problem(base, correction=(8,)).default_model()
    assert model.correction_target == "parameters" and model.correction_input == "concentration"
    assert model.field.corrected == ("CL", "ka") and model.field.size == 1.0
    plain = structured_problem(base).model_kwargs
    assert plain["correction"] is None and "correction_target" not in plain
