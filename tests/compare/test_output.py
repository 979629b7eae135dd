"""The comparison job owns its output folder: one run's complete set, a lock, SIGINT, exit status (failure 5)."""
import json
import os
import signal

import pytest

from pyro_node_uq.cli import main
from pyro_node_uq.compare import run_comparison
from pyro_node_uq.compare.output import OutputFolder, OutputFolderBusy
from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import METHODS, Method, register

TINY = {"num_train": 3, "num_test": 2, "num_extrapolation": 2, "num_times": 11}
CLI_TINY = [f"--problem-option={k}={v}" for k, v in TINY.items()] + ["--quick", "--no-progress", "--num-samples",
                                                                     "8", "--set", "map.num_steps=4"]
FAST = {"map": {"num_steps": 4}}


def _sigint_self(model, split, *, warm_start=None, **_):
    """A method during which the user presses Ctrl-C once: it finishes, the ones after it do not run."""
    os.kill(os.getpid(), signal.SIGINT)
    return warm_start


def _crash(model, split, **_):
    raise SystemExit("the process is going down")


@pytest.fixture
def extra_methods():
    register(Method("sigint_self", _sigint_self, "sends SIGINT to its own process", start="map"))
    register(Method("crash", _crash, "ends the process"))
    yield
    METHODS.pop("sigint_self")
    METHODS.pop("crash")


def _run(out, methods, **kwargs):
    return run_comparison(load_problem("chemical", **TINY), methods, out=str(out), quick=True, progress_bar=False,
                          num_samples=8, overrides=FAST, idata_samples=8, **kwargs)


def test_a_second_run_replaces_the_whole_folder(tmp_path):
    """Old figures and netCDFs of a method that fails (or is not run) this time must not stay beside the report."""
    out = tmp_path / "out"
    _run(out, ["map", "autonormal"])
    assert (out / "idata" / "autonormal.nc").exists() and (out / "figures" / "bands_autonormal_test.png").exists()
    rows = _run(out, ["map"], seed=1)
    assert [r["method"] for r in rows] == ["map"]
    assert not (out / "idata" / "autonormal.nc").exists() and not (out / "figures" / "bands_autonormal_test.png").exists()
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["complete"] and manifest["methods"] == {"map": "ok"} and "report.md" in manifest["files"]
    assert "seed: `1`" in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]  # no staging folder left


def test_sigint_stops_after_the_current_method_and_marks_the_rest(tmp_path, extra_methods):
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a job started in the background
    out = tmp_path / "out"
    _run(out, ["map", "autonormal"])
    rows = _run(out, ["map", "sigint_self", "autonormal", "lowrank"])
    assert rows.interrupted
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped", "skipped"]
    assert "interrupted" in rows[2]["note"]
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["complete"] is False and manifest["methods"]["autonormal"] == "skipped"
    report = (out / "report.md").read_text()
    assert report.index("**Incomplete run**") < report.index("## Problem")
    assert not (out / "idata" / "autonormal.nc").exists()  # the previous run's file is gone with it
    assert signal.getsignal(signal.SIGINT) is before  # the run restores the handler it found


def test_cli_exit_status_130_after_sigint(tmp_path, extra_methods, capsys):
    rc = main(["compare", "--methods", "map,sigint_self,autonormal", "--out", str(tmp_path / "o"), *CLI_TINY])
    assert rc == 130 and "incomplete" in capsys.readouterr().err


def test_a_run_that_dies_leaves_the_previous_output_untouched(tmp_path, extra_methods):
    out = tmp_path / "out"
    _run(out, ["map"])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        _run(out, ["map", "crash"])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_concurrent_runs_into_one_folder_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    with OutputFolder(out):
        with pytest.raises(OutputFolderBusy, match=f"another comparison \\(pid {os.getpid()}\\) is writing"):
            _run(out, ["map"])
        assert main(["compare", "--methods", "map", "--out", str(out), *CLI_TINY]) == 2
        assert "another comparison" in capsys.readouterr().err
    _run(out, ["map"])  # the lock is released


def test_a_folder_with_foreign_files_is_never_replaced(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not a comparison's output.*thesis.tex"):
        _run(tmp_path, ["map"])
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_staging_folders_of_killed_runs_are_cleaned(tmp_path):
    import subprocess
    import sys

    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,  # noqa: PLW1510
                             text=True).stdout)
    orphan = tmp_path / f".out.tmp-{pid}-xyz"
    (orphan / "figures").mkdir(parents=True)
    _run(tmp_path / "out", ["map"])
    assert not orphan.exists()


@pytest.mark.parametrize("args, rc, message", [
    (["--methods", "map", "--num-samples", "0"], 2, "num_samples: expected an integer >= 2"),
    (["--methods", ""], 2, "no method selected"),
    (["--methods", "nuts", "--set", "nuts.max_latent_dim=10"], 1, "no method ran"),  # skipped only: nothing compared
])
def test_cli_exit_status_is_nonzero_when_nothing_useful_ran(tmp_path, capsys, args, rc, message):
    assert main(["compare", "--out", str(tmp_path / "o"), *CLI_TINY, *args]) == rc
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--problem", "bogus"], "--problem: unknown problem 'bogus'"),
    (["--problem-option", "bogus=1"], "--problem-option: problem 'chemical' has no option(s) ['bogus']"),
    (["--threads", "0"], "--threads: expected an integer >= 1"),
])
def test_cli_bad_arguments_give_a_message_not_a_traceback(tmp_path, args, message):
    with pytest.raises(SystemExit) as e:
        main(["compare", "--methods", "map", "--out", str(tmp_path), *args])
    assert message in str(e.value)


def test_cli_runs_a_problem_that_takes_no_seed(tmp_path, monkeypatch):
    """``--problem theophylline`` passed ``seed=`` to a constructor without one (a TypeError traceback)."""
    from pyro_node_uq import cli

    seen = {}

    def stop(problem, *args, **kwargs):
        seen["p"] = problem
        raise ValueError("stop here")

    monkeypatch.setattr("pyro_node_uq.compare.run_comparison", stop)
    assert cli.main(["compare", "--problem", "theophylline", "--methods", "map", "--out", str(tmp_path)]) == 2
    assert seen["p"].name == "theophylline"


_LOOP = """
import sys
sys.path.insert(0, {root!r})
from pyro_node_uq.compare import run_comparison
from pyro_node_uq.data import load_problem
problem = load_problem("chemical", num_train=3, num_test=2, num_extrapolation=2, num_times=11)
print("ready", flush=True)
seed = 0
while True:
    run_comparison(problem, ["map"], out={out!r}, quick=True, progress_bar=False, num_samples=4,
                   overrides={{"map": {{"num_steps": 2}}}}, idata_samples=4, seed=seed)
    seed += 1
"""


def test_kill_9_during_comparison_runs_leaves_one_complete_run(tmp_path):
    """``kill -9`` at random moments of a loop of runs: the folder is always one run's verified, complete set."""
    import random
    import subprocess
    import sys

    from pyro_node_uq.utils.persist import read_manifest, verify_files

    out = tmp_path / "out"
    _run(out, ["map"])
    rng = random.Random(0)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _LOOP.format(root=root, out=str(out))], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        import time

        time.sleep(rng.uniform(0.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        manifest = read_manifest(out, "comparison")
        verify_files(out, manifest, "MANIFEST.json")
        assert manifest["complete"] and set(manifest["methods"]) == {"map"}
    _run(out, ["map"])  # the next run cleans the killed runs' staging folders
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


# ---------------------------------------------------------------------------- ownership of the output folder
def _tree_digest(root):
    """SHA-256 of every path, mode and byte under ``root`` (and of ``root``'s own entry list)."""
    import hashlib

    h = hashlib.sha256()
    for top, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        h.update(f"dir {os.path.relpath(top, root)} {sorted(dirs)} {sorted(files)}".encode())
        for name in sorted(files):
            path = os.path.join(top, name)
            h.update(f"file {name} {os.stat(path).st_mode}".encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _users_folder(path):
    (path / "figures").mkdir(parents=True)
    (path / "figures" / "fig1.png").write_bytes(b"\x89PNG my figure")
    (path / "report.md").write_text("# my own report, written by hand")
    return _tree_digest(path)


def test_cli_compare_into_a_users_folder_exits_2_and_leaves_every_byte(tmp_path, capsys):
    """A folder with the names a comparison writes (``report.md``, ``figures/``) but no manifest is the user's."""
    out = tmp_path / "mine"
    before = _users_folder(out)
    assert main(["compare", "--methods", "map", "--out", str(out), *CLI_TINY]) == 2
    assert "is not a comparison's output" in capsys.readouterr().err
    assert _tree_digest(out) == before
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no lock or staging folder left beside it either


def test_a_file_added_to_an_earlier_comparison_is_never_deleted(tmp_path, capsys):
    out = tmp_path / "out"
    _run(out, ["map"])
    (out / "figures" / "my_notes.txt").write_text("notes I keep with the figures")
    before = _tree_digest(out)
    with pytest.raises(ValueError, match=r"is not a comparison's output: besides the files its MANIFEST.json lists it "
                                         r"holds \['figures/my_notes.txt'\]"):
        _run(out, ["map"], seed=1)
    assert main(["compare", "--methods", "map", "--out", str(out), *CLI_TINY]) == 2
    assert "figures/my_notes.txt" in capsys.readouterr().err
    assert _tree_digest(out) == before


def test_an_edited_file_of_an_earlier_comparison_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    _run(out, ["map"])
    with open(out / "report.md", "a") as f:
        f.write("\nmy conclusions\n")
    before = _tree_digest(out)
    with pytest.raises(ValueError, match="report.md: checksum mismatch"):
        _run(out, ["map"], seed=1)
    assert _tree_digest(out) == before


@pytest.mark.parametrize("entry", ["file", "folder", "link"])
def test_any_foreign_entry_refuses_the_run(tmp_path, entry):
    out = tmp_path / "out"
    _run(out, ["map"])
    target = out / "idata" / "extra"
    if entry == "file":
        target.write_text("x")
    elif entry == "folder":
        target.mkdir()
    else:
        os.symlink(tmp_path, target)
    before = _tree_digest(out)
    with pytest.raises(ValueError, match="idata/extra"):
        _run(out, ["map"])
    assert _tree_digest(out) == before


def test_a_file_that_appears_during_the_run_is_kept(tmp_path, extra_methods):
    """Between the check at the start and the swap at the end someone writes into the old output: the file is
    not the comparison's to delete, so the run refuses at publish and nothing is lost."""
    out = tmp_path / "out"
    _run(out, ["map"])

    def write_into_out(model, split, *, warm_start=None, **_):
        (out / "late.txt").write_text("written during the run")
        return warm_start

    register(Method("late_writer", write_into_out, "writes into the output folder", start="map"))
    try:
        with pytest.raises(ValueError, match="late.txt"):
            _run(out, ["map", "late_writer"])
    finally:
        METHODS.pop("late_writer")
    assert (out / "late.txt").read_text() == "written during the run"


def test_discarding_the_replaced_output_keeps_what_its_manifest_does_not_list(tmp_path):
    """The last line of defence (a file written between the final check and the swap): only listed, unchanged
    files are deleted; the rest is moved to a visible ``<out>.kept-...`` folder with a warning."""
    out = tmp_path / "out"
    _run(out, ["map"])
    folder = OutputFolder(out)
    (out / "figures" / "mine.txt").write_text("mine")
    with pytest.warns(RuntimeWarning, match="kept in"):
        folder._discard(str(out))
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.kept-")]
    assert len(kept) == 1 and (kept[0] / "figures" / "mine.txt").read_text() == "mine"
    assert [p.relative_to(kept[0]).as_posix() for p in kept[0].rglob("*") if p.is_file()] == ["figures/mine.txt"]


def test_a_fit_output_is_not_a_comparison_output(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out, kind="fit") as folder:
        open(os.path.join(folder.stage, "params.pt"), "wb").close()
        folder.publish()
    before = _tree_digest(out)
    with pytest.raises(ValueError, match="a 'fit' save, expected a 'comparison' save"):
        _run(out, ["map"])
    assert _tree_digest(out) == before


def test_an_empty_folder_and_an_earlier_output_are_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _run(out, ["map"])
    _run(out, ["map"], seed=1)
    from pyro_node_uq.utils.persist import _UMASK

    assert os.stat(out).st_mode & 0o777 == 0o777 & ~_UMASK  # the umask's mode, not the staging folder's 0700
