"""The comparison job on the static problems: the SDE-BNN runs and is scored, the generic methods are skipped
with the reason, and the report, table, figures and netCDF are written."""
import csv

import pytest

from pyro_node_uq.compare import run_comparison
from pyro_node_uq.data import load_problem

FAST = {"sdebnn": {"num_steps": 20, "num_particles": 2, "elbo_particles": 4}, "odenet": {"num_steps": 20}}


@pytest.mark.parametrize("name,scores", [
    ("gap_regression", ("test_rmse", "test_nll", "test_crps", "extrap_coverage_90", "error_spearman",
                        "ood_auroc")),
    ("spirals", ("test_accuracy", "test_nll", "test_ece", "test_brier", "extrap_accuracy", "ood_auroc"))])
def test_static_comparison(tmp_path, name, scores):
    problem = load_problem(name, num_train=16, num_test=12, num_extrapolation=12)
    rows = run_comparison(problem, ["sdebnn", "odenet", "map", "nuts"], out=str(tmp_path), quick=True, progress_bar=False,
                          num_samples=8, overrides=FAST, idata_samples=16)
    status = {r["method"]: r["status"] for r in rows}
    assert status == {"sdebnn": "ok", "odenet": "ok", "map": "skipped", "nuts": "skipped"}
    assert "only its own guide applies" in rows[2]["note"]
    with open(tmp_path / "table.csv") as f:
        row = next(csv.DictReader(f))
    for key in scores:
        assert row[key] != "", key
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["bands_odenet_extrapolation.png", "bands_odenet_test.png", "bands_sdebnn_extrapolation.png",
                       "bands_sdebnn_test.png", "calibration_extrapolation.png", "calibration_test.png",
                       "cost_quality.png"]
    assert (tmp_path / "idata" / "sdebnn.nc").exists()
    report = (tmp_path / "report.md").read_text()
    assert ("Classification" in report) == (name == "spirals")
