"""A fit killed with SIGKILL mid-way resumes from its checkpoint to the same final parameters."""
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import fit_svi

ROOT = Path(__file__).resolve().parents[3]
STEPS, EVERY, KILL_AT = 24, 5, 17


def run_fit(checkpoint=None, kill_at=None, **kwargs):
    """The fit under test (minibatches of 4 of 8 trajectories); with ``kill_at`` the process SIGKILLs itself after
    that step, as a crash or a pre-empted job would end."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    problem = load_problem("chemical", num_train=8, seed=0).to(torch.float64)
    model = problem.default_model()
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0), init_scale=0.05)

    def callback(step, loss):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    fit = fit_svi(model, guide, problem.train, num_steps=STEPS, lr=0.02, progress_bar=False, subsample_size=4,
                  seed=3, checkpoint=checkpoint, checkpoint_every=EVERY, callback=callback, **kwargs)
    return fit.losses, {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}


def test_killed_fit_resumes_to_the_same_parameters(tmp_path):
    """Must-show: kill a run mid-way (SIGKILL), restart it, and reach the uninterrupted run's parameters."""
    path = tmp_path / "fit.ckpt"
    code = f"from tests.infer.distributed.test_checkpoint import run_fit; run_fit({str(path)!r}, kill_at={KILL_AT})"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, timeout=300, capture_output=True, text=True)  # noqa: PLW1510
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = torch.load(path, weights_only=False)
    assert state["step"] == KILL_AT // EVERY * EVERY  # the last checkpoint before the kill; later steps were lost
    assert not [p for p in os.listdir(tmp_path) if p != "fit.ckpt"]  # no temporary file left behind

    resumed_losses, resumed = run_fit(path)
    losses, reference = run_fit()
    assert len(resumed_losses) == STEPS
    assert resumed_losses == losses
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key
    assert torch.load(path, weights_only=False)["step"] == STEPS


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    path = tmp_path / "fit.ckpt"
    run_fit(path, kill_at=None)
    with pytest.raises(ValueError, match="written with num_steps=24, this run has num_steps=30"):
        problem = load_problem("chemical", num_train=8, seed=0).to(torch.float64)
        model = problem.default_model()
        fit_svi(model, AutoNormal(model), problem.train, num_steps=30, subsample_size=4, seed=3, checkpoint=path,
                progress_bar=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        run_fit(path)


# ---------------------------------------------------------------------------- safety and ownership
class _Payload:
    """Unpickling this object opens (creates) ``marker``: the side effect a malicious checkpoint would have."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _fit(path, num_steps=STEPS, guide_cls=AutoNormal, num_train=8, data_seed=0):
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    problem = load_problem("chemical", num_train=num_train, seed=data_seed).to(torch.float64)
    model = problem.default_model()
    guide = guide_cls(model, init_loc_fn=model.init_loc_fn(0))
    fit = fit_svi(model, guide, problem.train, num_steps=num_steps, subsample_size=4, seed=3, checkpoint=path,
                  checkpoint_every=EVERY, progress_bar=False)
    return fit.losses, {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}


def test_a_checkpoint_with_a_pickle_payload_is_refused_without_running_it(tmp_path):
    """Must-show: the payload would create a file when unpickled; it is refused and the file never appears."""
    marker, path = tmp_path / "payload_ran", tmp_path / "fit.ckpt"
    torch.save({"config": {}, "params": _Payload(marker)}, path)
    content = path.read_bytes()
    with pytest.raises(ValueError, match="cannot be read as a pyro-node-uq checkpoint.*left as it is"):
        _fit(path)
    assert not marker.exists()
    assert path.read_bytes() == content  # never overwritten either


def test_cli_fit_refuses_a_pickle_payload_with_status_2(tmp_path, capsys):
    from pyro_node_uq.cli import main

    marker, path = tmp_path / "payload_ran", tmp_path / "fit.ckpt"
    torch.save(_Payload(marker), path)
    assert main(["fit", "--problem-option", "num_train=4", "--steps", "2", "--no-progress", "--checkpoint",
                 str(path), "--out", str(tmp_path / "out")]) == 2
    assert "cannot be read as a pyro-node-uq checkpoint" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_foreign_torch_file_given_as_checkpoint_is_our_error_and_kept(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.ones(3)}, path)
    content = path.read_bytes()
    with pytest.raises(ValueError, match="a torch file, but not a pyro-node-uq SVI checkpoint"):
        _fit(path)
    assert path.read_bytes() == content


def test_a_checkpoint_refuses_other_data_and_another_guide_by_name(tmp_path):
    from pyro.infer.autoguide import AutoLowRankMultivariateNormal

    path = tmp_path / "fit.ckpt"
    _fit(path, num_steps=EVERY)
    content = path.read_bytes()
    with pytest.raises(ValueError, match=r"written with the training data \(fingerprint\)="):
        _fit(path, num_steps=EVERY, data_seed=1)
    with pytest.raises(ValueError, match="written with guide='AutoNormal', this run has "
                                         "guide='AutoLowRankMultivariateNormal'"):
        _fit(path, num_steps=EVERY, guide_cls=AutoLowRankMultivariateNormal)
    assert path.read_bytes() == content


def test_resuming_a_finished_fit_gives_the_same_parameters_and_no_new_ones(tmp_path):
    path = tmp_path / "fit.ckpt"
    losses, params = _fit(path, num_steps=EVERY)
    again_losses, again = _fit(path, num_steps=EVERY)
    assert again_losses == losses and sorted(again) == sorted(params)
    for name, value in params.items():
        assert torch.equal(again[name], value), name


def test_a_checkpoint_is_plain_data(tmp_path):
    path = tmp_path / "fit.ckpt"
    _fit(path, num_steps=EVERY)
    state = torch.load(path, weights_only=True)  # no allow-list needed
    assert state["format"] == "pyro-node-uq svi checkpoint" and state["step"] == EVERY


def test_a_second_fit_with_the_same_checkpoint_is_refused_while_one_runs(tmp_path):
    from pyro_node_uq.utils.persist import SaveBusy, lock_path, locked

    path = tmp_path / "fit.ckpt"
    with locked(lock_path(path), "test"), pytest.raises(SaveBusy, match="another fit is writing this checkpoint"):
        _fit(path, num_steps=2)
    assert not path.exists() and os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "fit.ckpt"
    _fit(path, num_steps=EVERY)
    return path.read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_corrupted_checkpoint_is_always_our_error(tmp_path, saved_checkpoint, data):
    """Truncated or with one byte changed anywhere: the resume raises our ValueError naming the file (or, where
    the change is in bytes torch never reads, resumes to exactly the saved fit); never a library error, never
    other numbers."""
    content = bytearray(saved_checkpoint)
    if data.draw(st.booleans(), label="truncate"):
        content = content[:data.draw(st.integers(0, len(content) - 1), label="length")]
    else:
        i = data.draw(st.integers(0, len(content) - 1), label="position")
        content[i] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_path / "fit.ckpt"
    path.write_bytes(bytes(content))
    from pyro_node_uq.infer.distributed import SVICheckpoint

    try:
        state = SVICheckpoint(path).read()
    except ValueError as e:
        assert str(path) in str(e)
        return
    reference = torch.load(io.BytesIO(saved_checkpoint), weights_only=True)
    assert state["digest"] == reference["digest"]
