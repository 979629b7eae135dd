"""The ``fit`` command, in one process and under ``torchrun`` with 2 processes."""
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import arviz as az
import pytest
import torch

from pyro_node_uq.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["fit", "--problem-option", "num_train=4", "--steps", "4", "--float64", "--no-progress", "--num-particles", "2"]


def _losses(folder):
    with open(folder / "losses.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_fit_command_names_bad_options(capsys):
    assert main(ARGS + ["--subsample-size", "9"]) == 2
    assert "--subsample-size (9) exceeds the 4 training trajectories" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(ARGS + ["--guide", "nope"])


def test_fit_command_writes_its_outputs_and_equals_one_process_under_torchrun(tmp_path, capsys):
    """The command writes params, losses and posterior; under torchrun with 2 gloo processes rank 0 alone reports
    and writes, and its loss curve is the 1-process one.  From the model's initialisation: the MAP warm start
    under torchrun is the slow test's below."""
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*ARGS, "--warm-start", "none", "--num-samples", "16"]
    assert main(args + ["--out", str(one)]) == 0
    assert "autonormal on chemical: 4 training trajectories over 1 process(es), 4 steps" in capsys.readouterr().out
    assert len(_losses(one)) == 4
    assert "AutoNormal.locs.R.0.weight" in torch.load(one / "params.pt", weights_only=False)["params"]
    idata = az.from_netcdf(one / "posterior.nc")
    assert idata.posterior["R.0.weight"].dims[:2] == ("chain", "draw")
    # no temporary files left; the manifest makes the three files one unit, as for compare --out
    assert sorted(os.listdir(one)) == ["MANIFEST.json", "losses.csv", "params.pt", "posterior.nc"]
    proc = _torchrun(tmp_path, [*args, "--out", str(two)])
    assert proc.stdout.count("over 2 process(es)") == 1  # rank 0 alone reports
    assert torch.allclose(torch.tensor(_losses(two)), torch.tensor(_losses(one)), rtol=1e-5)


def _torchrun(cwd, args, timeout=300):
    """``pyro_node_uq args`` under torchrun with 2 processes; the finished process (exit status 0 asserted)."""
    # the launcher starts from a clean slate: no process-group variables and no signal dispositions or mask
    # inherited from this test process (in the full default run, after every doctest, rank 1 aborted with
    # "terminate called without an active exception"; alone, or with only tests/ before it, it never did)
    group_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in group_vars and not k.startswith("TORCHELASTIC")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "pyro_node_uq", *args]

    def fresh_signals():
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)

    proc = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True,  # noqa: PLW1510
                          preexec_fn=fresh_signals, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_a_langevin_fit_under_torchrun_equals_one_process(tmp_path):
    """The Langevin guide (its own noise draws, its per-parameter learning rates at the MAP warm start) under 2
    processes ends with the 1-process losses and parameters (float64)."""
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*ARGS, "--guide", "langevin", "--steps", "6", "--num-samples", "8"]
    assert main([*args, "--out", str(one)]) == 0
    _torchrun(tmp_path, [*args, "--out", str(two)])
    assert torch.allclose(torch.tensor(_losses(two)), torch.tensor(_losses(one)), rtol=1e-5, atol=1e-8)
    params = [torch.load(folder / "params.pt", weights_only=False)["params"] for folder in (one, two)]
    assert params[0].keys() == params[1].keys()
    for name, value in params[0].items():
        assert torch.allclose(params[1][name], value, rtol=1e-5, atol=1e-8), name


# ---------------------------------------------------------------------------- the output folder and the checkpoint
SMALL = ARGS + ["--num-samples", "8", "--warm-start", "none"]  # the output and checkpoint plumbing: no MAP fit first


def test_the_guide_starts_at_a_map_fit_unless_told_not_to_or_resuming(tmp_path, monkeypatch):
    import argparse
    import dataclasses

    from pyro import poutine

    from pyro_node_uq.cli.fit import _warm_start
    from pyro_node_uq.data import load_problem
    from pyro_node_uq.methods import METHODS

    # the registered MAP with a short budget (a search among two starts included): what is checked is that the
    # warm start is that registered fit, not the fit's quality
    short = {"num_steps": 60, "num_starts": 2, "start_steps": 20}
    monkeypatch.setitem(METHODS, "map", dataclasses.replace(METHODS["map"], defaults=short))

    problem = load_problem("chemical", num_train=4, num_times=11)
    model = problem.default_model(R_hidden=(4,))
    args = argparse.Namespace(warm_start="map", checkpoint=None, seed=0, no_progress=True)
    fit_args, fit_kwargs = model.fit_args(problem.train)
    site = poutine.trace(model).get_trace(*fit_args, **fit_kwargs).nodes["R.0.bias"]
    started = _warm_start(args, model, problem)(site)
    reference = METHODS["map"].runner(model, problem.train, seed=0, progress_bar=False, record_errors=False,
                                      **METHODS["map"].options(problem.name))
    assert torch.equal(started, reference.guide.median()["R.0.bias"])  # the same deterministic MAP fit
    own = model.init_loc_fn(0)(site)
    for other in (dict(vars(args), warm_start="none"), dict(vars(args), checkpoint=str(tmp_path))):
        assert torch.equal(_warm_start(argparse.Namespace(**other), model, problem)(site), own)


def _tree_digest(root):
    from tests.compare.test_output import _tree_digest as digest

    return digest(root)


def test_fit_into_a_users_folder_exits_2_and_leaves_every_byte(tmp_path, capsys):
    """Must-show: ``fit --out`` into a folder with foreign files refuses before any work; every byte stays."""
    out = tmp_path / "mine"
    (out / "run").mkdir(parents=True)
    (out / "params.pt").write_bytes(b"my own parameters")
    (out / "run" / "notes.txt").write_text("notes")
    before = _tree_digest(out)
    with pytest.raises(SystemExit) as e:
        main(SMALL + ["--out", str(out)])
    assert e.value.code == 2 and "is not a fit's output" in capsys.readouterr().err
    assert _tree_digest(out) == before and sorted(os.listdir(tmp_path)) == ["mine"]


def test_rerunning_a_finished_fit_resumes_to_the_same_outputs(tmp_path, capsys):
    """The identical ``fit --checkpoint C --out D`` command run again: no new parameters, the same files."""
    ckpt, out = tmp_path / "c" / "fit.ckpt", tmp_path / "d"
    argv = SMALL + ["--checkpoint", str(ckpt), "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    params, losses = (out / "params.pt").read_bytes(), (out / "losses.csv").read_bytes()
    posterior = az.from_netcdf(out / "posterior.nc").posterior.load()
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert again.split("\n")[1:] == first.split("\n")[1:]  # the same RMSEs (the first line has the wall time)
    assert (out / "params.pt").read_bytes() == params and (out / "losses.csv").read_bytes() == losses
    assert az.from_netcdf(out / "posterior.nc").posterior.equals(posterior)
    state = torch.load(out / "params.pt", weights_only=False)
    assert not [k for k in state["params"] if k.endswith(".obs")]  # no guide site for the observations
    assert sorted(os.listdir(out)) == ["MANIFEST.json", "losses.csv", "params.pt", "posterior.nc"]


def test_a_file_added_to_a_fit_output_makes_the_next_fit_refuse(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(SMALL + ["--out", str(out)]) == 0
    (out / "my_plot.png").write_bytes(b"png")
    before = _tree_digest(out)
    with pytest.raises(SystemExit) as e:
        main(SMALL + ["--out", str(out), "--seed", "1"])
    assert e.value.code == 2 and "my_plot.png" in capsys.readouterr().err
    assert _tree_digest(out) == before


_FAULTS = ["params", "losses", "posterior", "manifest", "swap"]


@pytest.mark.parametrize("where", _FAULTS)
def test_a_fit_save_failing_at_any_write_leaves_the_previous_output(tmp_path, monkeypatch, where):
    """Fault injection as for the comparison: a failure at any write of the new output leaves the previous
    output as it was (and loadable), with no staging folder left; the next fit then replaces it."""
    import builtins

    import xarray

    from pyro_node_uq.compare import output
    from pyro_node_uq.utils import persist
    from pyro_node_uq.utils.persist import read_manifest, verify_files

    out = tmp_path / "d"
    assert main(SMALL + ["--out", str(out)]) == 0
    before = _tree_digest(out)

    def boom(*args, **kwargs):
        raise OSError(5, f"injected failure at {where}")

    real_save, real_open = torch.save, builtins.open
    if where == "params":
        monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: boom() if str(f).endswith("params.pt")
                            else real_save(obj, f, *a, **k))
    elif where == "losses":
        monkeypatch.setattr(builtins, "open", lambda f, *a, **k: boom() if str(f).endswith("losses.csv")
                            else real_open(f, *a, **k))
    elif where == "posterior":
        monkeypatch.setattr(xarray.Dataset, "to_netcdf", boom)
    elif where == "manifest":
        monkeypatch.setattr(persist, "atomic_save", boom)
    else:
        monkeypatch.setattr(output, "_exchange", boom)
    with pytest.raises(OSError, match="injected"):
        main(SMALL + ["--out", str(out), "--seed", "1"])
    monkeypatch.undo()
    assert _tree_digest(out) == before
    verify_files(out, read_manifest(out, "fit"), "MANIFEST.json")
    assert sorted(os.listdir(tmp_path)) == [".d.lock", "d"]
    assert main(SMALL + ["--out", str(out), "--seed", "1"]) == 0
    assert _tree_digest(out) != before
