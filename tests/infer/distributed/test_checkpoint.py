"""A fit killed with SIGKILL mid-way resumes from its checkpoint to the same final parameters."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
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
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, timeout=300, capture_output=True, text=True)
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
