"""The compiled Runge-Kutta solve: states and exact gradients equal to the TorchScript path's (float64 to 1e-12,
float32 to float32 rounding) and to autograd through ``torchdiffeq``'s rk4, for one and several batch members,
column counts that fill and that pad the last column block, with and without inputs, one and two hidden layers;
and the fallback (extension off, or a failed build warned about once).

The library is built once per machine into the build cache (a few seconds the first time) and once per process at
most; where no compiler is present the comparisons are skipped and the fallback tests still run."""
import itertools
import warnings

import pytest
import torch
import torchdiffeq

from pyro_node_uq.distributions import rk_backprop, rk_fused
from pyro_node_uq.distributions.solvers import RK4, Euler, Heun


@pytest.fixture(scope="module")
def built():
    if rk_fused.library() is None:
        pytest.skip("no compiler: the compiled solve is not available (its fallback is tested below)")


def _problem(B, M, inputs, hidden, dtype=torch.float64, K=6, H=3, D=2, seed=0, S=4):
    """A random solve of ``S`` stages in rk_backprop's layout: ``(h, x, w_in, b_in, dt, weights, biases)``,
    leaves needing gradients."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: (0.5 * torch.randn(*s, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_()
    sizes = (H, *hidden, H)
    weights = [r(B, o, i) for i, o in itertools.pairwise(sizes)]
    biases = [r(B, o, 1) for o in sizes[2:]]
    x = r(K, S, B, D, M) if inputs else None
    w_in = r(B, hidden[0], D if inputs else 0)
    dt = (0.05 + 0.1 * torch.rand(K, generator=gen, dtype=torch.float64)).to(dtype)
    return r(B, H, M), x, w_in, r(B, hidden[0], 1), dt, weights, biases


def _solve_and_grads(args, scheme, fused):
    """States and the gradients of a fixed random functional of them, by the compiled or the TorchScript path."""
    h, x, w_in, b_in, dt, weights, biases = args
    tab = scheme.tableau
    leaves = [v for v in (h, x, w_in if x is not None else None, b_in, *weights, *biases) if v is not None]
    solve = rk_fused.fused_solve if fused else rk_backprop._RKSolve.apply
    if fused:
        states = solve(h, x, w_in, b_in, dt, weights, biases, tab.a, tab.b)
    else:
        states = solve(h, x, w_in, b_in, dt, tab.a, tab.b, False, *weights, *biases)
    probe = torch.randn(states.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad((states * probe.to(states.dtype)).sum() + (states ** 2).sum(), leaves)
    return states.detach(), grads


@pytest.mark.parametrize("scheme", [RK4(), Euler(), Heun()], ids=["rk4", "euler", "heun"])
@pytest.mark.parametrize("B, M, inputs, hidden", [(1, 16, True, (8,)), (3, 5, True, (8,)), (2, 20, False, (8,)),
                                                  (2, 1, True, (6, 7)), (1, 9, False, (5, 4))])
def test_equals_the_torchscript_path_in_float64(built, scheme, B, M, inputs, hidden):
    args = _problem(B, M, inputs, hidden, S=len(scheme.tableau.b))
    (s1, g1), (s2, g2) = _solve_and_grads(args, scheme, True), _solve_and_grads(args, scheme, False)
    torch.testing.assert_close(s1, s2, rtol=1e-12, atol=1e-12)
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("B, M, inputs", [(1, 16, True), (4, 7, False), (2, 33, True)])
def test_equals_the_torchscript_path_in_float32(built, B, M, inputs):
    args = _problem(B, M, inputs, (32,), dtype=torch.float32)
    (s1, g1), (s2, g2) = _solve_and_grads(args, RK4(), True), _solve_and_grads(args, RK4(), False)
    assert s1.dtype == torch.float32 and all(g.dtype == torch.float32 for g in g1)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_equals_autograd_through_torchdiffeq_rk4(built):
    """One member, no inputs, on a uniform grid: torchdiffeq's rk4 (the 3/8 rule) stepping on the same times."""
    h, _, w_in, b_in, _, weights, biases = _problem(1, 4, False, (6,))
    t = torch.linspace(0.0, 0.6, 7, dtype=torch.float64)
    leaves = [h, b_in, *weights, *biases]

    def field(_, y):  # y (H, M): the features-first layout of one member
        return weights[1][0] @ torch.tanh(weights[0][0] @ y + b_in[0]) + biases[0][0]

    reference = torchdiffeq.odeint(field, h[0], t, method="rk4")  # (T, H, M)
    tab = RK4().tableau
    ours = rk_fused.fused_solve(h, None, w_in, b_in, t[1:] - t[:-1], weights, biases, tab.a, tab.b)[:, 0]
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours.sin().sum(), leaves), torch.autograd.grad(reference.sin().sum(), leaves)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck(built):
    h, x, w_in, b_in, dt, weights, biases = _problem(2, 3, True, (4,), K=3, S=2)
    tab = Heun().tableau

    def solve(h, x, w_in, b_in, *wb):
        return rk_fused.fused_solve(h, x, w_in, b_in, dt, wb[:2], wb[2:], tab.a, tab.b)

    assert torch.autograd.gradcheck(solve, (h, x, w_in, b_in, *weights, *biases))


def test_rk_solve_uses_the_compiled_solve_for_cpu_tensors(built, monkeypatch):
    args = _problem(1, 4, True, (5,))
    assert rk_fused.usable(args[0], args[1])
    calls = []
    monkeypatch.setattr(rk_fused, "fused_solve", lambda *a: calls.append(1) or rk_backprop._RKSolve.apply(
        *a[:5], a[7], a[8], False, *a[5], *a[6]))
    h, x, w_in, b_in, dt, weights, biases = args
    rk_backprop.rk_solve(h, x, w_in, b_in, dt, weights, biases, RK4().tableau.a, RK4().tableau.b)
    assert calls == [1]


def test_switched_off_it_is_not_built_and_the_torchscript_path_runs(monkeypatch):
    monkeypatch.setattr(rk_fused, "USE_EXTENSION", False)
    monkeypatch.setattr(rk_fused, "_LOADED", {})
    h, x, w_in, b_in, dt, weights, biases = _problem(1, 4, True, (5,))
    assert rk_fused.library() is None and not rk_fused.usable(h)
    tab = RK4().tableau
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # switched off: no warning
        states = rk_backprop.rk_solve(h, x, w_in, b_in, dt, weights, biases, tab.a, tab.b)
    assert states.grad_fn.name() == "_RKSolveBackward"
    assert rk_fused._LOADED == {}  # nothing was built


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(rk_fused, "USE_EXTENSION", True)
    monkeypatch.setattr(rk_fused, "_LOADED", {})

    def fail():
        raise OSError("no compiler here")

    monkeypatch.setattr(rk_fused, "_build", fail)
    h, x, w_in, b_in, dt, weights, biases = _problem(1, 4, True, (5,))
    tab = RK4().tableau
    with pytest.warns(RuntimeWarning, match="could not be built .*no compiler here.*PYRO_NODE_UQ_EXTENSION=0"):
        first = rk_backprop.rk_solve(h, x, w_in, b_in, dt, weights, biases, tab.a, tab.b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not tried again, not warned again
        second = rk_backprop.rk_solve(h, x, w_in, b_in, dt, weights, biases, tab.a, tab.b)
    assert first.grad_fn.name() == second.grad_fn.name() == "_RKSolveBackward"


def test_not_used_for_other_devices_or_dtypes():
    h = torch.zeros(1, 2, 3, dtype=torch.float16)
    assert not rk_fused.usable(h)
    assert not rk_fused.usable(torch.zeros(1, 2, 3, dtype=torch.float32), torch.zeros(1, 2, 3, dtype=torch.float64))
    assert not rk_fused.usable(torch.zeros(1, 2, 3, device="meta"))


def test_inputs_of_the_wrong_stage_count_are_an_error(built):
    h, x, w_in, b_in, dt, weights, biases = _problem(1, 4, True, (5,), S=4)
    with pytest.raises(ValueError, match=r"x: expected the inputs at every stage, \(6, 2, 1, 2, 4\)"):
        rk_fused.fused_solve(h, x, w_in, b_in, dt, weights, biases, Heun().tableau.a, Heun().tableau.b)


def test_build_directory_honours_torch_extensions_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert rk_fused.build_directory() == str(tmp_path)
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert rk_fused.build_directory() == str(tmp_path / "cache" / "pyro_node_uq" / "extensions")


def test_a_lock_left_by_a_killed_build_is_removed_and_a_fresh_one_kept(tmp_path):
    """A killed build's ``lock`` would make every later process wait for it forever (torch waits with no limit)."""
    import os
    import time

    lock = tmp_path / "lock"
    assert not rk_fused.clear_stale_lock(str(tmp_path))  # no lock
    lock.write_text("")
    assert not rk_fused.clear_stale_lock(str(tmp_path)) and lock.exists()  # a build in progress
    old = time.time() - rk_fused.STALE_LOCK_S - 5
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match="removed the lock file .* that a killed build left behind"):
        assert rk_fused.clear_stale_lock(str(tmp_path))
    assert not lock.exists()


def test_the_compiled_step_check_skips_states_that_are_not_finite(built):
    h, _, w_in, b_in, dt, weights, biases = _problem(1, 4, False, (5,))
    tab = RK4().tableau
    widths = (dt[:, None] * torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64)).contiguous()
    check = rk_fused.StepCheck(torch.zeros(len(dt), dtype=torch.bool), widths, None, 1)
    with torch.no_grad():
        rk_fused.fused_steps(h, None, w_in, b_in, dt, weights, biases, tab.a, tab.b, check=check)
    assert check.k >= 0 and check.err > 0
    h = h.detach().clone()
    h[0, 1, 2] = float("inf")
    with torch.no_grad():
        rk_fused.fused_steps(h, None, w_in, b_in, dt, weights, biases, tab.a, tab.b, check=check)
    assert check.k == -1
