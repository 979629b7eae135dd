import pytest
import torch

from pyro_node_uq.distributions import rk_loops, solve_cache
from pyro_node_uq.distributions.solve_cache import SolveCache

from . import test_fixed_grid as fixed


def test_loops_are_scripted_once_per_process_after_a_few_uses(monkeypatch):
    monkeypatch.setattr(solve_cache, "CACHE", SolveCache())
    monkeypatch.setattr(rk_loops, "USE_TORCHSCRIPT", True)
    for _ in range(solve_cache.CACHE.script_after - 1):  # a one-off solve runs the Python loop
        assert rk_loops.loop(rk_loops.forward_steps) is rk_loops.forward_steps
    first = rk_loops.loop(rk_loops.forward_steps)
    assert isinstance(first, torch.jit.ScriptFunction)
    assert rk_loops.loop(rk_loops.forward_steps) is first
    monkeypatch.setattr(solve_cache.CACHE, "script_after", 1)
    assert isinstance(rk_loops.loop(rk_loops.backward_steps), torch.jit.ScriptFunction)


@pytest.mark.parametrize("layout", fixed.LAYOUTS)
def test_python_loops_match_torchdiffeq(monkeypatch, layout):
    """Without TorchScript the same loops run in Python: values and gradients as torchdiffeq's (float64)."""
    monkeypatch.setattr(rk_loops, "USE_TORCHSCRIPT", False)
    fixed.test_fixed_path_matches_torchdiffeq("rk4", 2, layout)
    fixed.test_large_ensemble_mode_matches_torchdiffeq(monkeypatch, layout)


def test_a_failed_script_warns_once_and_runs_the_python_loop(monkeypatch):
    def fail(fn):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(solve_cache, "CACHE", SolveCache(script_after=1))
    monkeypatch.setattr(rk_loops, "USE_TORCHSCRIPT", True)
    monkeypatch.setattr(torch.jit, "script", fail)
    with pytest.warns(RuntimeWarning, match="TorchScript could not compile forward_steps"):
        assert rk_loops.loop(rk_loops.forward_steps) is rk_loops.forward_steps
    assert rk_loops.loop(rk_loops.forward_steps) is rk_loops.forward_steps  # no second warning, no second try
    with pytest.warns(RuntimeWarning, match="backward_steps"):
        rk_loops.loop(rk_loops.backward_steps)
    fixed.test_fixed_path_matches_torchdiffeq("rk4", 1, "particles")
