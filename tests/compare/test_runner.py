"""The comparison runner on a tiny problem: files, columns, failures recorded, atomic outputs, rank scores."""
import csv
import os

import arviz as az
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from pyro_node_uq.compare import auroc, run_comparison, spearman
from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import METHODS, Method, MethodSkipped, register

TINY = {"num_train": 3, "num_test": 2, "num_extrapolation": 2, "num_times": 11}
FAST = {"map": {"num_steps": 5}, "autonormal": {"num_steps": 3, "num_particles": 2, "elbo_particles": 4}}


def _boom(model, split, **_):
    raise RuntimeError("boom: this method always fails")


def _not_here(model, split, **_):
    raise MethodSkipped("not applicable here")


@pytest.fixture
def extra_methods():
    register(Method("boom", _boom, "always fails"))
    register(Method("absent", _not_here, "always skipped"))
    yield
    METHODS.pop("boom")
    METHODS.pop("absent")


def test_comparison_writes_everything_and_survives_failures(tmp_path, extra_methods):
    out = str(tmp_path)
    from pyro_node_uq.compare.output import OutputFolder

    with OutputFolder(tmp_path) as earlier:  # an earlier comparison's output (with its manifest) holding boom.nc
        os.makedirs(os.path.join(earlier.stage, "idata"))
        with open(os.path.join(earlier.stage, "idata", "boom.nc"), "w") as f:
            f.write("an earlier run's file")
        earlier.publish(methods={"boom": "ok"})
    problem = load_problem("chemical", **TINY)
    rows = run_comparison(problem, ["map", "boom", "ltau", "autonormal", "absent"], out=out, quick=True,
                          progress_bar=False, num_samples=8, overrides=FAST, idata_samples=8)
    status = {r["method"]: r["status"] for r in rows}
    assert status == {"map": "ok", "boom": "failed", "ltau": "ok", "autonormal": "ok", "absent": "skipped"}
    boom = next(r for r in rows if r["method"] == "boom")
    assert "RuntimeError: boom" in boom["note"] and (tmp_path / "logs" / "boom.log").exists()
    assert not (tmp_path / "idata" / "boom.nc").exists()  # an earlier run's file never sits beside a failure
    with open(tmp_path / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == ["map", "boom", "ltau", "autonormal", "absent"]
    for col in ("elbo", "test_rmse", "test_nll", "test_crps", "test_coverage_50", "test_coverage_90",
                "test_coverage_95", "test_width_90", "extrap_rmse", "extrap_nll", "extrap_coverage_95",
                "hidden_test_coverage_90", "error_spearman", "ood_auroc", "wall_time", "num_model_evals",
                "stochastic_dim", "note"):
        assert col in table[0], col
    an = next(r for r in table if r["method"] == "autonormal")
    assert 0 <= float(an["test_coverage_90"]) <= 1 and float(an["stochastic_dim"]) > 0 and an["elbo"]
    lt = next(r for r in table if r["method"] == "ltau")
    assert lt["test_coverage_90"] == "" and -1 <= float(lt["error_spearman"]) <= 1  # LTAU: no predictive scores
    # the AutoNormal cost includes the MAP fit it started from
    mp = next(r for r in table if r["method"] == "map")
    assert int(an["num_model_evals"]) > int(mp["num_model_evals"]) > 6  # 1 + 5 steps and the L-BFGS polish's
    idata = az.from_netcdf(tmp_path / "idata" / "autonormal.nc")
    assert idata.posterior.sizes["chain"] == 4 and "obs" in idata.log_likelihood
    for name in ("report.md", "table.md", "figures/calibration_test.png", "figures/hidden_extrapolation.png",
                 "figures/cost_quality.png", "figures/bands_map_test.png", "figures/bands_autonormal_extrapolation.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    report = (tmp_path / "report.md").read_text()
    assert "| boom | failed |" in report and "not applicable here" in report
    assert "calibrated (memory" in report and "on the first 1 test trajectories" in report  # LTAU's calibration
    assert "figures/cost_quality.png" in report and not list(tmp_path.rglob("*.tmp-*"))


def test_unknown_method_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown.*nope.*registered methods"):
        run_comparison(load_problem("chemical", **TINY), ["map", "nope"], out=str(tmp_path))


def test_options_resolve_defaults_problem_quick_overrides():
    m = METHODS["map"]
    full, slow = m.options("chemical")["num_steps"], m.options("elastoplastic")["num_steps"]
    assert slow < full and m.options("chemical", quick=True)["num_steps"] < full
    assert m.options("chemical", quick=True, overrides={"num_steps": 7})["num_steps"] == 7


def test_rank_scores_match_scipy_and_sklearn():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:10] = a[:10] = 1.0  # ties
    assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0], abs=1e-12)
    neg, pos = rng.normal(size=30), np.concatenate([rng.normal(1.0, size=20), [0.5, 0.5]])
    labels = np.r_[np.zeros(30), np.ones(22)]
    assert auroc(neg, pos) == pytest.approx(roc_auc_score(labels, np.r_[neg, pos]), abs=1e-12)
    assert np.isnan(spearman(np.zeros(5), np.arange(5.0)))  # a constant uncertainty ranks nothing


# ------------------------------------------------------------------------------------------------- under torchrun
RANKED = {"map": {"num_steps": 8}, "autonormal": {"num_steps": 3, "num_particles": 2, "elbo_particles": 4},
          "ensemble": {"num_members": 2, "num_steps": 3}}


def compare_in_float64(out):
    """The MAP (its LTAU recording sees a shard per rank), AutoNormal (data-parallel SVI) and an ensemble (members
    shared out to the ranks) on a tiny problem in float64; the rows as plain dicts (run by each of the 2 test
    processes of ``tests/infer/distributed/workers.py`` too)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        problem = load_problem("chemical", **TINY).to(torch.float64)
        rows = run_comparison(problem, list(RANKED), out=out, quick=True, num_samples=4, idata_samples=4,
                              progress_bar=False, overrides=RANKED)
        return [dict(r) for r in rows]
    finally:
        torch.set_default_dtype(dtype)


def test_under_two_processes_rank_0_alone_writes_the_one_process_table(tmp_path, two_processes):
    """With 2 gloo processes every fit is shared (data-parallel SVI, ensemble members gathered on rank 0), rank 0
    writes the rows of one process (scores to 1e-5 in float64) and rank 1 returns no rows and writes nothing."""
    one = compare_in_float64(str(tmp_path / "one"))
    (rows, entries), (rows1, _) = (r["comparison"] for r in two_processes)
    assert rows1 == []
    assert entries == [".out.lock", "out"]  # no second staging folder
    assert [(r["method"], r["status"]) for r in rows] == [(m, "ok") for m in RANKED]
    for a, b in zip(one, rows):
        scores = [k for k, v in a.items() if isinstance(v, float) and k not in ("wall_time", "num_model_evals")]
        assert "test_nll" in scores
        for key in scores:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-8, nan_ok=True), (a["method"], key)
