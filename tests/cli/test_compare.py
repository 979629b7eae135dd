"""The ``pyro-node-uq`` command line: the compare subcommand on a tiny problem, errors, the module entry point."""
import subprocess
import sys

import arviz as az

from pyro_node_uq.cli import main

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
