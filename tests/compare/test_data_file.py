"""``pyro-node-uq compare --data FILE.csv --format nonmem``: the user's own event table, per-unit plots."""
import time

import pytest

from pyro_node_uq.cli import main
from pyro_node_uq.data.pk import theophylline_table


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "theo.csv"
    theophylline_table().to_csv(path, index=False)
    return path


def test_compare_on_a_nonmem_file(csv, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["compare", "--data", str(csv), "--format", "nonmem", "--covariates", "WT", "--test-fraction", "0.25",
               "--time-fraction", "0.67", "--methods", "map,autonormal", "--quick", "--no-progress", "--out", str(out), "--num-samples", "8",
               "--set", "map.num_steps=3", "--set", "autonormal.num_steps=2", "--set", "autonormal.elbo_particles=2"])
    assert rc == 0, capsys.readouterr().err
    table = (out / "table.md").read_text()
    assert "| map |" in table and "| autonormal |" in table
    report = (out / "report.md").read_text()
    assert "## Reference: the training data's mean" in report and "| test |" in report
    pngs = [out / "figures" / f"bands_autonormal_{s}.png" for s in ("test", "extrapolation")]
    assert all(p.exists() and p.stat().st_size > 5000 for p in pngs)


def test_by_default_every_sample_of_the_fitted_units_is_fitted(csv, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["compare", "--data", str(csv), "--format", "nonmem", "--methods", "map",
               "--quick", "--no-progress", "--out", str(out), "--num-samples", "8", "--set", "map.num_steps=3"])
    assert rc == 0, capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "no extrapolation" in report and "| map |" in (out / "table.md").read_text()
    assert (out / "figures" / "bands_map_test.png").exists()
    assert not (out / "figures" / "bands_map_extrapolation.png").exists()
    import pandas as pd

    table = pd.read_csv(out / "nlme" / "map_table.csv")  # every sample of the fitted units, all in training
    assert set(table.SPLIT) == {"train"} and len(table) == 9 * 11 and "PRED-type" in report


def test_bad_data_arguments(csv, tmp_path, capsys):
    with pytest.raises(SystemExit, match="--format: expected 'nonmem' or 'trajectories'"):
        main(["compare", "--data", str(csv), "--format", "monolix", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match=r"--data: .*no column 'AGE' \(argument covariates=\)"):
        main(["compare", "--data", str(csv), "--covariates", "AGE", "--out", str(tmp_path / "b")])
    with pytest.raises(SystemExit, match="--data: .*no file"):
        main(["compare", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "c")])


@pytest.mark.slow
def test_every_quick_method_on_a_data_file_under_five_minutes(csv, tmp_path):
    """Issue 17 must-show: every quick method on a NONMEM file in under 5 minutes (2 cores)."""
    start = time.perf_counter()
    rc = main(["compare", "--data", str(csv), "--format", "nonmem", "--covariates", "WT", "--quick", "--no-progress",
               "--out", str(tmp_path / "out")])
    elapsed = time.perf_counter() - start
    table = (tmp_path / "out" / "table.md").read_text()
    assert rc in (0, 1) and "| map |" in table
    assert elapsed < 300, f"compare --data --quick took {elapsed:.0f} s"


def test_compare_on_a_long_format_trajectories_file(tmp_path, capsys):
    """``--format trajectories``: a long CSV with named unit, time, input and output columns; no extrapolation
    split, so LTAU's and the spread's out-of-domain scores are left out rather than failing."""
    import numpy as np
    import pandas as pd

    rows = [{"subject": u, "t": tv, "dose": float(tv < 1), "conc": float(np.exp(-0.2 * u * tv))}
            for u in range(1, 7) for tv in np.linspace(0, 3, 10)]
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = tmp_path / "out"
    rc = main(["compare", "--data", str(path), "--format", "trajectories", "--unit", "subject", "--time", "t",
               "--inputs", "dose", "--outputs", "conc", "--methods", "map,ltau", "--quick", "--no-progress",
               "--out", str(out), "--num-samples", "4", "--set", "map.num_steps=4"])
    assert rc == 0, capsys.readouterr().err
    table = (out / "table.csv").read_text()
    assert "ltau" in table and "ood_auroc" not in table.splitlines()[0]
    assert "no extrapolation" in (out / "report.md").read_text()
    with pytest.raises(SystemExit, match=r"--data: read_trajectories: .*no column 'conc2' \(argument outputs=\)"):
        main(["compare", "--data", str(path), "--format", "trajectories", "--unit", "subject", "--time", "t",
              "--outputs", "conc2", "--out", str(tmp_path / "bad")])


_TINY_RUN = ["--methods", "map", "--quick", "--no-progress", "--set", "map.num_steps=1", "--num-samples", "2"]


def test_repeated_covariates_and_unreadable_files_are_refused(csv, tmp_path):
    with pytest.raises(SystemExit, match=r"--data: read_events: covariates: \['WT'\] named more than once"):
        main(["compare", "--data", str(csv), "--covariates", "WT,WT", "--out", str(tmp_path / "a"), *_TINY_RUN])
    binary = tmp_path / "data.csv"
    binary.write_bytes(b"\x00\x01\x02PK\x03\x04")
    with pytest.raises(SystemExit, match=r"--data: read_events: '.*data.csv' is a binary file"):
        main(["compare", "--data", str(binary), "--out", str(tmp_path / "b"), *_TINY_RUN])


def test_modelled_durations_in_a_data_file(tmp_path, capsys):
    """Theophylline with its doses as zero-order absorption of modelled duration (RATE -2 on the dose rows): the
    default grey-box structure gets the parameter ``D2`` (the depot) and fits; ``--structure none`` (a pure NODE,
    which has no such parameter) is refused by name."""
    import pandas as pd

    frame = theophylline_table()
    frame["RATE"] = [-2 if float(a) > 0 else 0 for a in pd.to_numeric(frame["AMT"], errors="coerce").fillna(0)]
    path = tmp_path / "theo_rate.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    rc = main(["compare", "--data", str(path), "--format", "nonmem", "--out", str(out), *_TINY_RUN])
    assert rc == 0, capsys.readouterr().err
    assert "D2" in (out / "nlme" / "map_parameters.csv").read_text()
    with pytest.raises(SystemExit, match=r"--structure none: .*modelled rate or duration \(RATE -1 / -2\)"):
        main(["compare", "--data", str(path), "--format", "nonmem", "--structure", "none",
              "--out", str(tmp_path / "none"), *_TINY_RUN])
