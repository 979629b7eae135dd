"""The ``pyro-node-uq`` command line: the compare subcommand on a tiny problem, errors, the module entry point."""
import csv
import subprocess
import sys

import arviz as az
import pytest

from pyro_node_uq.cli import main

from .test_fit import _torchrun

TINY = ["--problem-option", "num_train=3", "--problem-option", "num_test=2", "--problem-option",
        "num_extrapolation=2", "--problem-option", "num_times=11"]


def test_compare_command_writes_the_report(tmp_path, capsys):
    rc = main(["compare", "--problem", "chemical", "--methods", "map,lowrank,nuts", "--quick", "--no-progress",
               "--out", str(tmp_path), "--num-samples", "8", "--set", "map.num_steps=4",
               "--set", "lowrank.num_steps=2", "--set", "lowrank.elbo_particles=2", "--set", "nuts.max_latent_dim=100",
               *TINY])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "lowrank" in printed and "skipped" in printed  # NUTS: the default model is too large
    table = (tmp_path / "table.md").read_text()
    assert "| map |" in table and "| nuts | skipped |" in table and "cov90" in table
    assert az.from_netcdf(tmp_path / "idata" / "lowrank.nc").posterior_predictive["obs"].ndim == 5
    assert (tmp_path / "report.md").exists() and (tmp_path / "figures" / "bands_lowrank_test.png").exists()


def test_compare_rejects_unknown_methods_and_bad_overrides(tmp_path, capsys):
    assert main(["compare", "--methods", "map,nope", "--out", str(tmp_path), *TINY]) == 2
    assert "nope" in capsys.readouterr().err
    try:
        main(["compare", "--set", "no_dot=3", "--out", str(tmp_path), *TINY])
    except SystemExit as e:
        assert "METHOD.OPTION" in str(e)
    else:
        raise AssertionError("--set without a method name must fail")


def test_module_entry_point_lists_methods():
    out = subprocess.run([sys.executable, "-m", "pyro_node_uq", "compare", "--list"], capture_output=True, text=True,
                         check=True).stdout
    assert "autonormal" in out and "ensemble" in out and "langevin_kernel" in out


def _table(folder):
    with open(folder / "table.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_compare_under_torchrun_writes_the_one_process_table(tmp_path):
    """``torchrun --nproc-per-node 2 ... compare``: every SVI method fits data-parallel (the mixture guide,
    started from the gathered members, on rank 0 alone), the ensemble's members and NUTS's chains are shared out,
    rank 0 alone writes; in float64 the table's scores equal one process's to 1e-5.  The MAP is kept short and
    unpolished: at the quick learning rate its optimisation amplifies rounding about tenfold per step after ~60
    steps, so longer MAP fits of 1 and 2 processes agree in distribution, not to 1e-5; ten L-BFGS iterations after
    it moved AutoNormal's loss slope by 1.2e-5 relative.  (The polish under ``torchrun`` is checked by the fit
    command's test.)"""
    methods = "map,autonormal,lowrank,langevin_learned,svgd,layerwise_last,ensemble,langevin_mixture,nuts"
    tiny = [*TINY[2:], "--problem-option", "num_train=4"]
    args = ["compare", "--problem", "chemical", *tiny, "--methods", methods,
            "--quick", "--float64", "--set", "map.num_steps=40", "--set", "map.polish_iters=0",
            "--num-samples", "8", "--no-progress"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--out", str(one)]) == 0
    proc = _torchrun(tmp_path, [*args, "--out", str(two)], timeout=900)
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports
    rows_one, rows_two = _table(one), _table(two)
    assert [(r["method"], r["status"]) for r in rows_two] == [(m, "ok") for m in methods.split(",")]
    for a, b in zip(rows_one, rows_two):
        for key, value in a.items():
            if key in ("wall_time", "num_model_evals", "note") or not value:
                continue
            try:
                expected = float(value)
            except ValueError:
                assert b[key] == value, (a["method"], key)
            else:
                assert float(b[key]) == pytest.approx(expected, rel=1e-5, abs=1e-8, nan_ok=True), (a["method"], key)
