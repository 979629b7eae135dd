"""Property-based tests (hypothesis) of event tables and covariates: any well-formed table reads back to exactly
its units, observations, doses and covariates whatever the row order; a blank id, a non-numeric cell or a
repeated covariate anywhere is refused by row and column."""
import pandas as pd
import pytest
import torch

from pyro_node_uq.data import read_events

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                    database=None)
COVARIATES = ("WT", "AGE", "CRCL")


@st.composite
def tables(draw):
    """``(frame, truth)``: a NONMEM table of 1-5 units in shuffled row order, and what it must read back to."""
    ids = draw(st.lists(st.integers(1, 999), min_size=1, max_size=5, unique=True))
    num_cov = draw(st.integers(0, 3))
    rows, truth = [], {}
    for uid in ids:
        times = draw(st.lists(st.integers(1, 40), min_size=1, max_size=5, unique=True))
        values = draw(st.lists(st.floats(0.01, 100.0), min_size=len(times), max_size=len(times)))
        doses = draw(st.lists(st.tuples(st.integers(0, 40), st.floats(0.5, 500.0)), max_size=2,
                              unique_by=lambda d: d[0]))
        cov = draw(st.lists(st.floats(1.0, 200.0), min_size=num_cov, max_size=num_cov))
        extra = {c: v for c, v in zip(COVARIATES, cov)}
        truth[uid] = {"obs": {t / 4: v for t, v in zip(times, values)}, "doses": sorted((t / 4, a) for t, a in doses),
                          "cov": cov}
        rows += [dict(ID=uid, TIME=t / 4, DV=v, AMT=0.0, EVID=0, CMT=2, **extra) for t, v in zip(times, values)]
        rows += [dict(ID=uid, TIME=t / 4, DV=".", AMT=a, EVID=1, CMT=1, **extra) for t, a in doses]
    order = draw(st.permutations(range(len(rows))))
    frame = pd.DataFrame([rows[i] for i in order])
    first_seen = list(dict.fromkeys(frame["ID"].tolist()))
    return frame, truth, first_seen, list(COVARIATES[:num_cov])


@SETTINGS
@given(tables())
def test_a_well_formed_table_reads_back_exactly(case):
    frame, truth, first_seen, covariates = case
    u = read_events(frame, covariates=covariates)
    assert u.ids.tolist() == first_seen  # integer ids kept, in first-appearance order
    assert int(u.mask.sum()) == sum(len(v["obs"]) for v in truth.values())
    grid = u.t.tolist()
    for n, uid in enumerate(first_seen):
        for t, value in truth[uid]["obs"].items():
            j = grid.index(t)
            assert bool(u.mask[n, j]) and float(u.y[n, j, 0]) == pytest.approx(value, rel=1e-12)
        given_doses = truth[uid]["doses"]
        if u.doses is not None:
            k = int(u.doses.mask[n].sum())
            assert k == len(given_doses)
            assert u.doses.time[n, :k].tolist() == [d[0] for d in given_doses]
            assert u.doses.amount[n, :k].tolist() == pytest.approx([d[1] for d in given_doses], rel=1e-12)
        else:
            assert not given_doses
        if covariates:
            assert u.covariates[n].tolist() == pytest.approx(truth[uid]["cov"], rel=1e-12)
    assert u.obs_cmt == 1 and u.covariate_names == tuple(covariates)


@SETTINGS
@given(tables(), st.data())
def test_a_blank_id_anywhere_is_refused_by_row(case, data):
    frame, *_ = case
    row = data.draw(st.integers(0, len(frame) - 1))
    frame = frame.astype({"ID": object})
    frame.loc[row, "ID"] = data.draw(st.sampled_from(["", " ", ".", "NA"]))
    with pytest.raises(ValueError, match=rf"row {row + 1}, column 'ID': missing unit id"):
        read_events(frame)


@SETTINGS
@given(tables(), st.data())
def test_a_non_number_anywhere_is_refused_by_row_and_column(case, data):
    frame, *_ = case
    row = data.draw(st.integers(0, len(frame) - 1))
    column = data.draw(st.sampled_from(["TIME", "AMT", "EVID"]))
    frame = frame.astype({column: object})
    frame.loc[row, column] = data.draw(st.sampled_from(["abc", "1,5", "--"]))
    with pytest.raises(ValueError, match=rf"row {row + 1}, column '{column}': expected a number"):
        read_events(frame)


@SETTINGS
@given(tables(), st.data())
def test_repeated_covariates_are_refused(case, data):
    frame, _, _, covariates = case
    if not covariates:
        frame = frame.assign(WT=70.0)
        covariates = ["WT"]
    twice = data.draw(st.sampled_from(covariates))
    names = data.draw(st.permutations(covariates + [twice]))
    with pytest.raises(ValueError, match=rf"covariates: \['{twice}'\] named more than once"):
        read_events(frame, covariates=names)


@SETTINGS
@given(tables(), st.data())
def test_an_observation_in_another_compartment_is_refused(case, data):
    frame, *_ = case
    observations = [i for i in range(len(frame)) if frame.loc[i, "EVID"] == 0]
    if len(observations) < 2:
        return
    row = data.draw(st.sampled_from(observations[1:]))
    frame.loc[row, "CMT"] = 3
    with pytest.raises(ValueError, match=r"column 'CMT': an observation of compartment \d, but row \d+ observes"):
        read_events(frame)
    assert torch.is_tensor(read_events(frame.drop(index=row).reset_index(drop=True)).y)
