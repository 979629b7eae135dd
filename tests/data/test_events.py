"""read_events: the NONMEM / nlmixr2 event-table convention, and errors that name the row and column."""
import pandas as pd
import pyro
import pytest
import torch

from pyro_node_uq.data import read_events
from pyro_node_uq.models import GreyBoxNODEModel


def _frame(**changes):
    base = {"ID": [1, 1, 1, 1, 2, 2, 2], "TIME": [0, 0.5, 1, 2, 0, 1.5, 3],
            "DV": [".", 5.0, 3.1, 2.0, ".", 4.0, "."], "AMT": [100, 0, 0, 0, 80, 0, 0],
            "EVID": [1, 0, 0, 0, 1, 0, 0], "MDV": [1, 0, 0, 1, 1, 0, 0], "WT": [70, 70, 70, 70, 60, 61, 61]}
    base.update(changes)
    return pd.DataFrame(base)


def test_reads_observations_doses_and_covariates():
    u = read_events(_frame(), covariates=["WT"])
    assert u.t.tolist() == [0.5, 1.0, 1.5]  # MDV=1 and "." rows are not observations
    assert u.mask.tolist() == [[True, True, False], [False, False, True]]
    assert u.y[0, :2, 0].tolist() == [5.0, 3.1] and u.y[1, 2, 0] == 4.0
    assert u.doses.amount.tolist() == [[100.0], [80.0]] and u.doses.compartment.tolist() == [[0], [0]]
    assert u.covariates.tolist() == [[70.0], [60.0]]  # the unit's first value
    assert u.ids.tolist() == [1, 2] and u.covariate_names == ("WT",)
    times, observed = u.unit_times
    assert times[0, :2].tolist() == [0.5, 1.0] and observed.tolist() == [[True, True], [True, False]]


def test_csv_file_infusions_censoring_and_no_evid(tmp_path):
    frame = _frame(RATE=[50, 0, 0, 0, 0, 0, 0], CENS=[0, 0, 1, 0, 0, 0, 0]).drop(columns=["EVID"])
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    u = read_events(path)
    assert u.doses.rate[0].tolist() == [50.0] and u.doses.end()[0].tolist() == [2.0]
    assert u.censored is not None and u.censored[0].tolist() == [False, True, False]
    assert u.doses.breakpoints().tolist() == [0.0, 2.0]


@pytest.mark.parametrize("changes, kwargs, match", [
    ({"TIME": [0, "a", 1, 2, 0, 1.5, 3]}, {}, r"row 2, column 'TIME': expected a number, got 'a'"),
    ({}, {"dv": "CONC"}, r"no column 'CONC' \(argument dv=\)"),
    ({"TIME": [0, 1, 1, 2, 0, 1.5, 3]}, {}, r"row 3, column 'TIME': unit '1' has two observations at time 1"),
    ({"EVID": [1, 0, 0, 0, 4, 0, 0]}, {}, r"row 5, column 'EVID': EVID 4 is not supported"),
    ({"AMT": [0, 0, 0, 0, 80, 0, 0]}, {}, r"row 1, column 'AMT': a dose \(EVID 1\) needs a positive amount"),
    ({"RATE": [-3, 0, 0, 0, 0, 0, 0]}, {}, r"row 1, column 'RATE': RATE -3 is not supported"),
    ({"RATE": [-2, 0, 0, 0, 0, 0, 0], "AMT": [0, 0, 0, 0, 80, 0, 0]}, {},
     r"row 1, column 'AMT': a modelled infusion \(RATE -2\) needs a positive amount"),
    ({"RATE": [0, -1, 0, 0, 0, 0, 0]}, {}, r"row 2, column 'RATE': RATE -1 \(a modelled infusion\) on a row that is not"),
    ({"RATE": [-2, 0, 0, 0, 0, 0, 0], "SS": [1, 0, 0, 0, 0, 0, 0], "II": [0] * 7}, {},
     r"row 1, column 'II': a steady-state dose \(SS 1\) needs a positive"),
    ({"CMT": [0, 2, 2, 2, 1, 2, 2]}, {}, r"row 1, column 'CMT': expected a 1-based compartment"),
    ({}, {"covariates": ["AGE"]}, r"no column 'AGE' \(argument covariates=\)"),
    ({"ADDL": [2, 0, 0, 0, 0, 0, 0]}, {}, r"row 1, column 'II': ADDL 2 needs a positive dosing interval"),
    ({"ADDL": [1.5, 0, 0, 0, 0, 0, 0], "II": [12, 0, 0, 0, 0, 0, 0]}, {}, r"row 1, column 'ADDL': expected a whole"),
    ({"SS": [1, 0, 0, 0, 0, 0, 0]}, {}, r"row 1, column 'II': a steady-state dose \(SS 1\) needs a positive"),
    ({"SS": [2, 0, 0, 0, 0, 0, 0], "II": [12] * 7}, {}, r"row 1, column 'SS': SS 2 is not supported"),
    ({"RATE": [-0.5, 0, 0, 0, 0, 0, 0]}, {}, r"row 1, column 'RATE': RATE -0.5 is not supported"),
])
def test_errors_name_row_and_column(changes, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_events(_frame(**changes), **kwargs)


def test_modelled_rates_and_durations_read_as_their_codes(tmp_path):
    """RATE -1 / -2 dose rows are kept as those codes (the model's R<n> / D<n> resolve them), with ADDL and a
    steady state like any dose; an observation row may carry RATE 0 or '.'; without EVID a RATE -1 row with no
    amount is not a dose and is refused by row and column."""
    frame = _frame(RATE=[-2, ".", 0, 0, -1, 0, "."], ADDL=[1, 0, 0, 0, 0, 0, 0], II=[12, 0, 0, 0, 24, 0, 0],
                   SS=[0, 0, 0, 0, 1, 0, 0], CMT=[1, 1, 1, 1, 2, 1, 1])
    path = tmp_path / "modelled.csv"
    frame.to_csv(path, index=False)
    u = read_events(path, ss_doses=3)
    assert u.doses.rate[0, :2].tolist() == [-2.0, -2.0] and u.doses.time[0, :2].tolist() == [0.0, 12.0]
    assert u.doses.rate[1].tolist() == [-1.0] * 4 and u.doses.time[1].tolist() == [-72.0, -48.0, -24.0, 0.0]
    assert u.doses.compartment.tolist() == [[0, 0, 0, 0], [1, 1, 1, 1]]
    assert u.doses.modelled.tolist() == [[True, True, False, False], [True] * 4]
    assert u.doses.end()[0, 0] == 0.0  # an unresolved modelled infusion has no end of its own
    with pytest.raises(ValueError, match=r"row 2, column 'RATE': RATE -1 \(a modelled infusion\) on a row that is "
                                         r"not a dose \(EVID 0, 'AMT' not positive\)"):
        read_events(_frame(RATE=[0, -1, 0, 0, 0, 0, 0]).drop(columns=["EVID"]))


def test_additional_doses_expand_to_rows(tmp_path):
    """ADDL = n, II = tau on a dose row: the same dose n more times, every tau (as explicit rows would give)."""
    frame = _frame(ADDL=[2, 0, 0, 0, 0, 0, 0], II=[0.75, ".", ".", ".", ".", ".", "."], RATE=[0] * 7)
    path = tmp_path / "addl.csv"
    frame.to_csv(path, index=False)
    u = read_events(path)
    assert u.doses.time[0].tolist() == [0.0, 0.75, 1.5] and u.doses.amount[0].tolist() == [100.0] * 3
    assert u.doses.mask.tolist() == [[True, True, True], [True, False, False]]
    rows = pd.concat([_frame(), pd.DataFrame({"ID": [1, 1], "TIME": [0.75, 1.5], "DV": [".", "."],
                                             "AMT": [100, 100], "EVID": [1, 1], "MDV": [1, 1], "WT": [70, 70]})])
    explicit = read_events(rows)
    assert torch.equal(u.doses.time, explicit.doses.time) and torch.equal(u.doses.amount, explicit.doses.amount)


def test_bad_table_type_and_missing_file(tmp_path):
    with pytest.raises(TypeError, match="table must be a pandas DataFrame or a CSV path"):
        read_events([1, 2])
    with pytest.raises(FileNotFoundError, match="no file"):
        read_events(tmp_path / "missing.csv")


def test_observation_compartment_is_recorded():
    u = read_events(_frame(CMT=[1, 2, 2, 2, 1, 2, 2]))
    assert u.obs_cmt == 1 and u.doses.compartment.tolist() == [[0], [0]]
    assert u.y.dtype == torch.float64


@pytest.mark.parametrize("changes, kwargs, match", [
    ({"ID": [1, 1, "", 1, 2, 2, 2]}, {}, r"row 3, column 'ID': missing unit id"),
    ({"ID": [1, 1, 1, 1, ".", 2, 2]}, {}, r"row 5, column 'ID': missing unit id"),
    ({"CMT": [1, 2, 2, 2, 1, 3, 2]}, {}, (r"row 6, column 'CMT': an observation of compartment 3, but row 2 observes "
                                         r"compartment 2")),
    ({}, {"covariates": ["WT", "WT"]}, r"covariates: \['WT'\] named more than once"),
])
def test_rows_that_would_change_the_units_silently_are_refused(changes, kwargs, match):
    """A blank id was a phantom unit (renumbering every id), an observation in another compartment moved the
    observed compartment, and a repeated covariate was read twice."""
    with pytest.raises(ValueError, match=match):
        read_events(_frame(**changes), **kwargs)


def test_observations_skipped_by_mdv_may_name_another_compartment():
    u = read_events(_frame(CMT=[1, 2, 2, 3, 1, 2, 2]))  # row 4 (CMT 3) has MDV 1: not an observation
    assert u.obs_cmt == 1


@pytest.mark.parametrize("content, match", [
    (b"", r"'.*empty.csv' is empty"),
    (b"  \n\n", r"'.*empty.csv' is empty"),
    (b"ID,TIME,DV\n", r"'.*empty.csv' has a header but no data rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", r"'.*empty.csv' is a binary file"),
    (b'ID,TIME,DV\n1,"0,1\n', r"'.*empty.csv' is not a readable CSV table"),
])
def test_unreadable_files_are_named(tmp_path, content, match):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_events(path)


def test_two_units_are_refused_by_the_split_not_by_a_plate(tmp_path):
    """Two units leave one to fit after holding one out: a clear error about the split."""
    from pyro_node_uq.data import events_problem
    from pyro_node_uq.data.pk import theophylline_table

    table = theophylline_table()
    with pytest.raises(ValueError, match=r"2 units, of which 1 held out as new units, leave 1 to fit.*at least 2 "
                                         r"fitted units"):
        events_problem(table[table.ID.isin([1, 2])])
    assert len(events_problem(table[table.ID.isin([1, 2, 3])]).train) == 2


def test_all_zero_observations_are_refused():
    from pyro_node_uq.data import events_problem

    frame = pd.concat([_frame(ID=[i] * 4 + [i + 10] * 3) for i in (1, 2, 3)])
    frame["DV"] = [".", 0.0, 0.0, 0.0, ".", 0.0, "."] * 3
    with pytest.raises(ValueError, match="every observation .* is 0"):
        events_problem(frame)


def test_steady_state_dose_matches_the_closed_form_steady_state():
    """SS 1 with II 12 on a one-compartment IV bolus of 100 into V 20 with CL 2 (k 0.1 / h): within the interval,
    C(t) = (D / V) exp(-k t) / (1 - exp(-k II)) to 1e-9 (the 40 added doses leave exp(-48) of the start)."""
    frame = pd.DataFrame({"ID": [1, 1, 1, 1], "TIME": [0, 1, 6, 11.5], "DV": [".", 1.0, 1.0, 1.0],
                          "AMT": [100, 0, 0, 0], "EVID": [1, 0, 0, 0], "SS": [1, 0, 0, 0], "II": [12, 0, 0, 0]})
    u = read_events(frame)
    assert u.doses.time[0].tolist() == [-12.0 * k for k in range(40, -1, -1)]
    model = GreyBoxNODEModel("one_compartment_iv", random_effects=())
    data = {"CL_pop": torch.tensor(2.0, dtype=torch.float64), "V_pop": torch.tensor(20.0, dtype=torch.float64)}
    with pyro.poutine.condition(data=data):
        tr = pyro.poutine.trace(model).get_trace(u.t, None, None, num_trajectories=1, doses=u.doses)
    k = 0.1
    expected = 100 / 20 * torch.exp(-k * u.t) / (1 - torch.exp(torch.tensor(-k * 12.0, dtype=torch.float64)))
    assert torch.allclose(tr.nodes["y_mean"]["value"][0, :, 0], expected, rtol=1e-9)


@pytest.mark.parametrize("code, value", [(-2, 3.0), (-1, 100 / 3.0)])
def test_steady_state_modelled_infusion_matches_the_closed_form_steady_state(code, value):
    """SS 1 with II 12 and RATE -2 (duration D1 = 3 h) or -1 (rate R1 = 100 / 3) on a one-compartment IV dose of
    100 into V 20 with CL 2 (k 0.1 / h), the parameter fixed: the steady-state infusion
    C(t) = R / CL (1 - exp(-k t)) + C0 exp(-k t) during it, C(D) exp(-k (t - D)) after, with the trough
    C0 = R / CL (1 - exp(-k D)) exp(-k (II - D)) / (1 - exp(-k II)), to 1e-9, on the closed form and (tolerance
    1e-10) on the ODE path."""
    frame = pd.DataFrame({"ID": [1] * 5, "TIME": [0, 1, 3, 6, 11.5], "DV": [".", 1.0, 1.0, 1.0, 1.0],
                          "AMT": [100, 0, 0, 0, 0], "EVID": [1, 0, 0, 0, 0], "SS": [1, 0, 0, 0, 0],
                          "II": [12, 0, 0, 0, 0], "RATE": [code, 0, 0, 0, 0]})
    u = read_events(frame)
    name = "D1" if code == -2 else "R1"
    data = {"CL_pop": torch.tensor(2.0, dtype=torch.float64), "V_pop": torch.tensor(20.0, dtype=torch.float64),
            f"{name}_pop": torch.tensor(value, dtype=torch.float64)}
    k, D, R, ii = 0.1, 3.0, 100 / 3.0, 12.0
    decay = lambda s: torch.exp(torch.as_tensor(-k * s, dtype=torch.float64))
    trough = R / 2.0 * (1 - decay(D)) * decay(ii - D) / (1 - decay(ii))
    during = R / 2.0 * (1 - decay(u.t)) + trough * decay(u.t)
    peak = R / 2.0 * (1 - decay(D)) + trough * decay(D)
    expected = torch.where(u.t <= D, during, peak * decay(u.t - D))
    for solver in (None, {"rtol": 1e-10, "atol": 1e-10}):
        structure = "one_compartment_iv"
        if solver is not None:  # the same field without its closed form: the ODE path
            from pyro_node_uq.models import Structure
            from pyro_node_uq.models.structures import get_structure
            s = get_structure(structure)
            structure = Structure("iv", s.field, s.states, s.params, s.observe_fn)
        model = GreyBoxNODEModel(structure, random_effects=(), dose_parameters={name: 1.0}, solver=solver)
        with pyro.poutine.condition(data=data):
            tr = pyro.poutine.trace(model).get_trace(u.t, None, None, num_trajectories=1, doses=u.doses)
        got = tr.nodes["y_mean"]["value"][0, :, 0]
        assert torch.allclose(got, expected, rtol=1e-9 if solver is None else 1e-7), (got - expected).abs().max()


def test_steady_state_after_earlier_doses_is_refused():
    frame = pd.DataFrame({"ID": [1, 1, 1], "TIME": [0, 5, 6], "DV": [".", ".", 3.0], "AMT": [100, 50, 0],
                          "EVID": [1, 1, 0], "SS": [0, 1, 0], "II": [0, 12, 0]})
    with pytest.raises(ValueError, match=r"row 2, column 'SS': .* only as its unit's first dose"):
        read_events(frame)
