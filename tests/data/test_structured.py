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
