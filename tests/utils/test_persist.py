"""Crash-safe saves: atomic single files, multi-file units with a manifest, orphan cleanup, symlink safety."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_node_uq.compare.report import write_text
from pyro_node_uq.infer import LTAU, LossTrajectoryRecorder
from pyro_node_uq.utils import persist
from pyro_node_uq.utils.persist import SaveError, atomic_save, load_unit, save_unit

faiss = pytest.importorskip("faiss")


def _ltau(seed, n=40):
    gen = torch.Generator().manual_seed(seed)
    ltau = LTAU(k=3)
    for epoch in range(4):
        ltau.record(torch.arange(n), torch.rand(n, generator=gen, dtype=torch.float64) * (seed + 1))
    ltau.fit(torch.randn(n, 2, generator=gen, dtype=torch.float64), torch.arange(n))
    return ltau


def _prediction(ltau):
    x = torch.linspace(-1, 1, 14, dtype=torch.float64).reshape(7, 2)
    return ltau.predict(x).mean


# ---------------------------------------------------------------------------- single files
def test_atomic_save_never_writes_through_a_planted_symlink(tmp_path):
    """Serious failure 3: the old temporary name ``.<name>.tmp-<pid>`` was predictable and followed."""
    victim = tmp_path / "outside.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / f".rec.pt.tmp-{os.getpid()}")
    os.symlink(victim, out / f".table.csv.tmp-{os.getpid()}")
    rec = LossTrajectoryRecorder()
    rec.record(torch.arange(3), torch.ones(3))
    rec.save(out / "rec.pt")
    write_text("new", out / "table.csv")
    assert victim.read_text() == "precious"
    assert (out / "table.csv").read_text() == "new"
    assert LossTrajectoryRecorder.load(out / "rec.pt").num_samples == 3


def test_atomic_save_replaces_a_symlink_at_the_target_instead_of_following_it(tmp_path):
    victim = tmp_path / "outside.txt"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "report.md")
    atomic_save(tmp_path / "report.md", lambda tmp: open(tmp, "w").write("new"))  # noqa: SIM115
    assert victim.read_text() == "precious" and not os.path.islink(tmp_path / "report.md")


def test_orphaned_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)  # noqa: PLW1510
    pid = int(dead.stdout)
    (tmp_path / f".rec.pt.tmp-{pid}-abc").write_bytes(b"partial")
    (tmp_path / f".rec.pt.tmp-{os.getpid()}-live").write_bytes(b"in progress")  # a live writer: kept
    atomic_save(tmp_path / "rec.pt", lambda tmp: open(tmp, "wb").write(b"ok"))  # noqa: SIM115
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".rec.pt.tmp-{os.getpid()}-live", "rec.pt"]


@pytest.mark.parametrize("content, what", [(b"", "empty"), (b"PK\x03\x04trunc", "cannot be read"),
                                           (b"just some text", "cannot be read")])
def test_recorder_load_of_a_bad_file_names_the_file(tmp_path, content, what):
    path = tmp_path / "rec.pt"
    path.write_bytes(content)
    with pytest.raises(SaveError, match=f"rec.pt.*{what}"):
        LossTrajectoryRecorder.load(path)


def test_recorder_load_of_a_foreign_torch_file_names_the_file(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "model.pt")
    with pytest.raises(SaveError, match="model.pt: not a loss-trajectory recorder"):
        LossTrajectoryRecorder.load(tmp_path / "model.pt")


# ---------------------------------------------------------------------------- units
def test_failed_ltau_save_leaves_the_previous_save_intact(tmp_path, monkeypatch):
    """Serious failure 1: B's save failing at its second file must not leave A's index with B's recorder."""
    a, b = _ltau(0), _ltau(1, n=30)
    a.save(tmp_path / "s")
    expected = _prediction(a)

    def full_disk(index, path):
        open(path, "wb").write(b"half")  # noqa: SIM115
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", full_disk)
    with pytest.raises(OSError, match="No space"):
        b.save(tmp_path / "s")
    loaded = LTAU.load(tmp_path / "s")
    assert torch.equal(_prediction(loaded), expected)
    assert loaded.recorder.num_samples == 40
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".")) == []


_WRITES = ["recorder", "index", "state", "manifest", "rename"]


@pytest.mark.parametrize("where", _WRITES)
def test_ltau_save_fault_at_each_write(tmp_path, monkeypatch, where):
    """A failure at any write of B leaves A loadable and exact; a later save of B then works."""
    a, b = _ltau(0), _ltau(1, n=30)
    a.save(tmp_path / "s")
    calls = {"torch": 0}
    real_save, real_write, real_rename, real_atomic = torch.save, faiss.write_index, os.rename, persist.atomic_save

    def boom():
        raise OSError(5, f"injected failure at {where}")

    def fake_save(obj, path, *args, **kwargs):
        calls["torch"] += 1
        if (where, calls["torch"]) in (("recorder", 1), ("state", 2)):
            boom()
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fake_save)
    monkeypatch.setattr(faiss, "write_index", lambda i, p: boom() if where == "index" else real_write(i, p))
    monkeypatch.setattr(os, "rename", lambda s, d: boom() if where == "rename" else real_rename(s, d))
    monkeypatch.setattr(persist, "atomic_save", lambda p, w: boom() if where == "manifest" else real_atomic(p, w))
    with pytest.raises(OSError, match="injected"):
        b.save(tmp_path / "s")
    monkeypatch.undo()
    assert torch.equal(_prediction(LTAU.load(tmp_path / "s")), _prediction(a))
    b.save(tmp_path / "s")
    assert torch.equal(_prediction(LTAU.load(tmp_path / "s")), _prediction(b))
    assert len([p for p in (tmp_path / "s").iterdir() if p.name.startswith("data-")]) == 1


def test_ltau_load_verifies_the_manifest(tmp_path):
    _ltau(0).save(tmp_path / "s")
    paths = load_unit(tmp_path / "s", "ltau")
    with open(paths["index.faiss"], "r+b") as f:
        f.truncate(10)
    with pytest.raises(SaveError, match="index.faiss: checksum mismatch"):
        LTAU.load(tmp_path / "s")
    (tmp_path / "s" / "MANIFEST.json").write_text("{not json")
    with pytest.raises(SaveError, match="MANIFEST.json: the manifest is not valid JSON"):
        LTAU.load(tmp_path / "s")
    save_unit(tmp_path / "other", {"a.txt": lambda p: open(p, "w").write("x")}, kind="comparison")  # noqa: SIM115
    with pytest.raises(SaveError, match="a 'comparison' save, expected a 'ltau' save"):
        LTAU.load(tmp_path / "other")
    manifest = json.loads((tmp_path / "other" / "MANIFEST.json").read_text())
    manifest["version"] = 99
    (tmp_path / "other" / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(SaveError, match="format version 99"):
        load_unit(tmp_path / "other", "comparison")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaveError, match="no manifest"):
        LTAU.load(tmp_path / "empty")


_LOOP = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    from tests.utils.test_persist import _ltau
    a, b = _ltau(0), _ltau(1, n=30)
    print("ready", flush=True)
    i = 0
    while True:
        (a if i % 2 else b).save({path!r})
        i += 1
""")


def _kill_during_save_loop(tmp_path, kills, seed):
    import random

    rng = random.Random(seed)
    a, b = _ltau(0), _ltau(1, n=30)
    a.save(tmp_path / "s")
    valid = {tuple(_prediction(a).tolist()), tuple(_prediction(b).tolist())}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = _LOOP.format(root=root, path=str(tmp_path / "s"))
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert tuple(_prediction(LTAU.load(tmp_path / "s")).tolist()) in valid
    a.save(tmp_path / "s")  # the next save cleans what the killed writers left
    left = [p.name for p in (tmp_path / "s").iterdir() if p.name != "MANIFEST.json"]
    assert len(left) == 1 and left[0].startswith("data-")


def test_kill_9_during_a_save_loop_never_leaves_a_mixed_save(tmp_path):
    """``kill -9`` of a process saving A and B in a loop: the folder always loads as exactly A or exactly B."""
    _kill_during_save_loop(tmp_path, kills=3, seed=0)


@pytest.mark.slow
def test_kill_9_during_a_save_loop_many_times(tmp_path):
    _kill_during_save_loop(tmp_path, kills=20, seed=1)


def test_an_ltau_save_of_version_0_1_without_a_manifest_still_loads(tmp_path):
    ltau = _ltau(0)
    paths = load_unit(_save(ltau, tmp_path / "new"), "ltau")
    old = tmp_path / "old"
    old.mkdir()
    for name, path in paths.items():
        (old / name).write_bytes(open(path, "rb").read())  # noqa: SIM115
    assert torch.equal(_prediction(LTAU.load(old, unverified=True)), _prediction(ltau))


def _save(ltau, path):
    ltau.save(path)
    return path


# ---------------------------------------------------------------------------- locking and foreign bytes
_SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    from tests.utils.test_persist import _ltau
    ltaus = [_ltau(0), _ltau(1, n=30)]
    print("ready", flush=True)
    for i in range({count}):
        ltaus[i % 2].save({path!r})
""")


def _saver(path, count):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", _SAVER.format(root=root, path=str(path), count=count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_loading_while_another_process_saves_waits_for_the_save(tmp_path):
    """Loads during a loop of saves by another process: each gives exactly one save's LTAU, never a
    FileNotFoundError from a data folder removed under it."""
    path = tmp_path / "s"
    a, b = _ltau(0), _ltau(1, n=30)
    a.save(path)
    valid = {tuple(_prediction(a).tolist()), tuple(_prediction(b).tolist())}
    proc = _saver(path, 60)
    loads = 0
    while proc.poll() is None or loads < 5:
        assert tuple(_prediction(LTAU.load(path)).tolist()) in valid
        loads += 1
    assert proc.wait() == 0, proc.stderr.read()


def test_two_processes_saving_into_one_folder_take_turns(tmp_path):
    path = tmp_path / "s"
    procs = [_saver(path, 15), _saver(path, 15)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert LTAU.load(path).recorder.num_samples in (30, 40)
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith("data-")) == ["MANIFEST.json"]


def test_a_save_into_a_folder_another_process_holds_waits_then_says_so(tmp_path, monkeypatch):
    from pyro_node_uq.utils.persist import SaveBusy, unit_lock

    monkeypatch.setattr(persist, "LOCK_WAIT", 0.2)
    a = _ltau(0)
    a.save(tmp_path / "s")
    busy = f"the ltau save .* is in use by another process \\(pid {os.getpid()}\\)"
    with unit_lock(tmp_path / "s", "ltau"), pytest.raises(SaveBusy, match=busy):
        _ltau(1).save(tmp_path / "s")
    assert torch.equal(_prediction(LTAU.load(tmp_path / "s")), _prediction(a))


def _old_format(ltau, path):
    """An LTAU save of version 0.1: the three files side by side, no manifest."""
    paths = load_unit(_save(ltau, path.parent / (path.name + "-new")), "ltau")
    path.mkdir()
    for name, p in paths.items():
        (path / name).write_bytes(Path(p).read_bytes())
    return path


@pytest.mark.parametrize("field, offset, value", [("ntotal", 8, 1 << 40), ("d", 4, 1 << 30), ("count", 37, 1 << 40)])
def test_corrupt_faiss_index_sizes_are_our_error_not_bad_alloc(tmp_path, field, offset, value):
    """faiss trusts the sizes in the file: a corrupt one asks for terabytes (``std::bad_alloc``); the header is
    checked first."""
    import struct

    old = _old_format(_ltau(0), tmp_path / "old")
    data = bytearray((old / "index.faiss").read_bytes())
    fmt = "<i" if field == "d" else "<q"
    struct.pack_into(fmt, data, offset, value)
    (old / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(SaveError, match="index.faiss: "):
        LTAU.load(old, unverified=True)


def test_garbage_faiss_bytes_are_our_error(tmp_path):
    old = _old_format(_ltau(0), tmp_path / "old")
    (old / "index.faiss").write_bytes(b"IxF2" + bytes(range(256)) * 4)
    with pytest.raises(SaveError, match="index.faiss"):
        LTAU.load(old, unverified=True)
    (old / "index.faiss").write_bytes(b"\x00\x01")
    with pytest.raises(SaveError, match="too short for a faiss index"):
        LTAU.load(old, unverified=True)


def test_an_old_format_save_mixed_from_two_saves_is_refused(tmp_path):
    """Two fits of the same size: the index of one beside the state of the other would load and predict from
    the wrong neighbours.  Nothing in a save of version 0.1 ties its files together, so it loads only when the
    caller vouches for it; one mixed from saves of different sizes is refused even then."""
    a, b = _old_format(_ltau(0), tmp_path / "a"), _old_format(_ltau(2), tmp_path / "b")
    (a / "index.faiss").write_bytes((b / "index.faiss").read_bytes())
    with pytest.raises(SaveError, match="version 0.1 .* a folder mixed from two saves cannot be told apart"):
        LTAU.load(a)
    c = _old_format(_ltau(1, n=30), tmp_path / "c")
    (a / "recorder.pt").write_bytes((c / "recorder.pt").read_bytes())
    with pytest.raises(SaveError, match="do not belong together"):
        LTAU.load(a, unverified=True)
    (b / "index.faiss").write_bytes((c / "index.faiss").read_bytes())
    with pytest.raises(SaveError, match="index.faiss: an index of 30 points in 2 dimensions, but the LTAU state "
                                        "has 40"):
        LTAU.load(b, unverified=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corrupt_index_header_is_our_error_or_the_same_index(tmp_path_factory, data):
    """One byte of the index header changed (sizes, type, metric, flags; in an old-format save, where no checksum
    catches it first): our SaveError naming the file, or (a reserved field) exactly the same predictions."""
    old = tmp_path_factory.mktemp("old") / "s"
    ltau = _ltau(0)
    _old_format(ltau, old)
    content = bytearray((old / "index.faiss").read_bytes())
    i = data.draw(st.integers(0, 44), label="position")
    content[i] ^= data.draw(st.integers(1, 255), label="xor")
    (old / "index.faiss").write_bytes(bytes(content))
    try:
        loaded = LTAU.load(old, unverified=True)
    except SaveError as e:
        assert "index.faiss" in str(e)
        return
    assert torch.equal(_prediction(loaded), _prediction(ltau))
