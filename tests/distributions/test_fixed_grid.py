import pytest
import torch

from pyro_node_uq.distributions import (
    Interpolator,
    NODETrajectory,
    fixed_grid,
    solve_cache,
)
from pyro_node_uq.distributions.solve_cache import SolveCache
from pyro_node_uq.nn import BatchedMLP

T = 9


def _setup(input_dim=1, hidden=(8,), Z_hidden=(5,), P=3, traj=(4,), seed=0):
    gen = torch.Generator().manual_seed(seed)
    R = BatchedMLP("R", (3 + input_dim, *hidden, 3))
    Z = None if Z_hidden is None else BatchedMLP("Z", (3 + input_dim, *Z_hidden, 2))
    shapes = {**R.param_shapes(), **(Z.param_shapes() if Z is not None else {})}
    lead = () if P is None else (P,) + (1,) * len(traj)
    params = {k: 0.7 * torch.randn(lead + s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    t = torch.cat([torch.zeros(1), torch.rand(T - 1, generator=gen).cumsum(0)]).double()  # a non-uniform grid
    x = torch.randn(traj + (T, input_dim), generator=gen, dtype=torch.float64) if input_dim else None
    y = torch.randn(traj + (T, 2), generator=gen, dtype=torch.float64)
    return R, Z, params, t, x, y


def _solve(R, Z, params, t, x, backend, **solver):
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    interpolation = solver.pop("interp", "linear")
    d = NODETrajectory(R, Z, params, t, x, h0=torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64), scale=0.3,
                       obs_dim=2, solver=dict(backend=backend, **solver), interpolation=interpolation)
    return d, params


LAYOUTS = ["particles", "unbatched", "two_traj_dims", "per_trajectory", "no_inputs", "deep_no_Z"]


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("substeps", [1, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fixed_path_matches_torchdiffeq(method, substeps, layout):
    kw = {"P": None} if layout == "unbatched" else {"traj": (2, 3)} if layout == "two_traj_dims" else {}
    if layout == "no_inputs":
        kw["input_dim"] = 0
    if layout == "deep_no_Z":
        kw.update(hidden=(6, 7), Z_hidden=None)
    R, Z, params, t, x, y = _setup(**kw)
    if layout == "per_trajectory":  # weights that differ per trajectory: no sharing along the last batch dim
        params = {k: v.expand((3, 4) + v.shape[2:]).clone() for k, v in params.items()}
    lps, grads = [], []
    for backend in ("fixed", "torchdiffeq"):
        d, p = _solve(R, Z, params, t, x, backend, method=method, substeps=substeps)
        lp = d.log_prob(y)
        lp.sum().backward()
        lps.append(lp.detach())
        grads.append({k: v.grad for k, v in p.items()})
    assert lps[0].shape == lps[1].shape
    torch.testing.assert_close(lps[0], lps[1], rtol=1e-10, atol=1e-10)
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_ensemble_mode_matches_torchdiffeq(monkeypatch, layout):
    """Above the budget (forced here) the input term is formed stage by stage and the weight gradients are
    added stage by stage instead of gathered at the end: the same values and gradients (on the TorchScript path,
    not the compiled solve)."""
    from pyro_node_uq.distributions import rk_backprop, rk_fused

    monkeypatch.setattr(rk_fused, "USE_EXTENSION", False)
    monkeypatch.setattr(fixed_grid, "_FUSE_BUDGET", 0)
    monkeypatch.setattr(rk_backprop, "_GATHER_BUDGET", 0)
    used = []
    init = rk_backprop._Accumulated.__init__
    monkeypatch.setattr(rk_backprop._Accumulated, "__init__", lambda self, *a: used.append(1) or init(self, *a))
    test_fixed_path_matches_torchdiffeq("rk4", 2, layout)
    assert len(used) == 1  # the one hand-written solve's gradient was added stage by stage


@pytest.mark.parametrize("streamed", [False, True])
def test_input_term_gradients_match_with_cubic_inputs(monkeypatch, streamed):
    """Gradients of the weights and of the inputs x themselves (two inputs, cubic interpolation), with the
    input term W_x x + b computed for all stages at once or (large ensembles) stage by stage."""
    R, Z, params, t, x, y = _setup(input_dim=2, P=5)
    if streamed:
        monkeypatch.setattr(fixed_grid, "_FUSE_BUDGET", 0)
    out = []
    for backend in ("torchdiffeq", "fixed"):
        xg = x.detach().requires_grad_()
        d, p = _solve(R, Z, params, t, xg, backend, interp="cubic")
        d.log_prob(y).sum().backward()
        out.append((d.mean.detach(), xg.grad, {k: v.grad for k, v in p.items()}))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-10, atol=1e-10)
    for k in out[0][2]:
        torch.testing.assert_close(out[1][2][k], out[0][2][k], rtol=1e-10, atol=1e-10)


def test_auto_backend_picks_the_fast_path_only_where_it_applies(monkeypatch):
    calls = []
    monkeypatch.setattr("pyro_node_uq.distributions.node_solve.solve_node_fixed",
                        lambda *a, **k: calls.append(1) or fixed_grid.solve_node_fixed(*a, **k))
    R, Z, params, t, x, _y = _setup()
    for solver, fast in (({"method": "rk4"}, True), ({"method": "dopri5"}, False),
                         ({"method": "rk4", "adjoint": True}, False), ({"method": "rk4", "step_size": 0.1}, False)):
        calls.clear()
        NODETrajectory(R, Z, params, t, x, h0=torch.zeros(3), scale=0.3, solver=solver).mean  # noqa: B018
        assert bool(calls) == fast, solver


def test_compile_policy_auto_waits_caches_and_falls_back(monkeypatch):
    compiled = []

    def fake_compile(fn, **kw):
        compiled.append(kw)
        return lambda *a: fn(*a)

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(solve_cache, "CACHE", SolveCache())
    R, Z, params, t, x, _y = _setup()
    ref = _solve(R, Z, params, t, x, "fixed")[0].mean
    for i in range(solve_cache.CACHE.compile_after + 2):
        out = _solve(R, Z, params, t, x, "fixed", compile="auto")[0].mean
        assert len(compiled) == (0 if i + 1 < solve_cache.CACHE.compile_after else 1)  # once, then cached
    torch.testing.assert_close(out, ref)
    _solve(R, Z, params, t[:5], x[..., :5, :], "fixed", compile=True)[0].mean  # a shorter grid: same step shapes  # noqa: B018
    assert len(compiled) == 1
    _solve(R, Z, params, t, x[:2], "fixed", compile=True)[0].mean  # fewer trajectories: compiled at once  # noqa: B018
    assert len(compiled) == 2

    def broken_compile(fn, **kw):
        def fail(*a):
            raise RuntimeError("no compiler here")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    solve_cache.CACHE.compiled.clear()
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        out = _solve(R, Z, params, t, x, "fixed", compile=True)[0].mean
    torch.testing.assert_close(out, ref)


def test_stage_times_sit_on_the_grid():
    t = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    times, dt = fixed_grid.stage_times(t, "rk4", substeps=2)
    torch.testing.assert_close(dt, torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(times[:, 0], torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(times[:, -1], torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["linear", "cubic"])
def test_vectorised_interpolation_equals_pointwise(kind):
    gen = torch.Generator().manual_seed(0)
    times = torch.linspace(0, 1, 7, dtype=torch.float64)
    interp = Interpolator(times, torch.randn(3, 7, 2, generator=gen, dtype=torch.float64), kind)
    query = torch.rand(20, generator=gen, dtype=torch.float64) * 1.4 - 0.2  # outside the grid too
    torch.testing.assert_close(interp.at_grid(query), torch.stack([interp(q) for q in query], dim=-2))


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_hand_written_gradient_is_taken_and_matches_autograd(monkeypatch, method):
    from pyro_node_uq.distributions import rk_backprop

    R, Z, params, t, x, y = _setup(hidden=(6, 5), P=2, traj=(3,))
    used = []
    monkeypatch.setattr(fixed_grid, "rk_solve", lambda *a, **k: used.append(1) or rk_backprop.rk_solve(*a, **k))
    grads = []
    for solver in ({"method": method, "substeps": 2}, {"method": method, "substeps": 2, "compile": True}):
        if solver.get("compile"):  # the compile path runs the autograd step loop; here without a compiler
            monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
            monkeypatch.setattr(solve_cache, "CACHE", SolveCache())
        d, p = _solve(R, Z, params, t, x, "fixed", **solver)
        d.log_prob(y).sum().backward()
        grads.append({k: v.grad for k, v in p.items()})
    assert len(used) == 1  # the first solve only
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("input_dim", [0, 1, 2])
@pytest.mark.parametrize("grid", ["nonuniform", "uniform"])
@pytest.mark.parametrize("substeps", [1, 2])
def test_fast_step_check_measures_what_the_torchdiffeq_check_measures(monkeypatch, method, input_dim, grid,
                                                                      substeps):
    """The fast path's own step-doubling check gives the relative error of issue 16's torchdiffeq check; on a
    uniform grid it takes the solve's own step as the "one step" and solves only the two half steps (the Python
    check, run where the compiled solve is not)."""
    _step_check_against_torchdiffeq(monkeypatch, method, input_dim, grid, substeps, compiled=False)


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("input_dim", [0, 1])
@pytest.mark.parametrize("grid", ["nonuniform", "uniform"])
@pytest.mark.parametrize("substeps", [1, 2])
def test_compiled_step_check_measures_what_the_torchdiffeq_check_measures(monkeypatch, method, input_dim, grid,
                                                                          substeps):
    """The same check run by the compiled solve in its own call: no further solve, the same relative error."""
    _step_check_against_torchdiffeq(monkeypatch, method, input_dim, grid, substeps, compiled=True)


def _step_check_against_torchdiffeq(monkeypatch, method, input_dim, grid, substeps, compiled):
    from pyro_node_uq.distributions import rk_backprop, rk_fused, step_check

    if not compiled:
        monkeypatch.setattr(rk_fused, "USE_EXTENSION", False)
    elif rk_fused.library() is None:
        pytest.skip("no compiler: the compiled solve is not available")

    R, _Z, params, t, x, _y = _setup(input_dim=input_dim)
    if grid == "uniform":
        t = torch.linspace(0, 4, T, dtype=torch.float64)
    h0 = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    errs, check_steps = [], []
    monkeypatch.setattr(fixed_grid, "warn_if_unstable", lambda err, *a: errs.append(err))
    interp = Interpolator(t, x) if input_dim else None
    monkeypatch.setattr(fixed_grid, "rk_steps",
                        lambda h, x, w, b, dt, *a, **k: check_steps.append(len(dt)) or rk_backprop.rk_steps(
                            h, x, w, b, dt, *a, **k))
    with torch.no_grad():  # the solve itself then runs rk_steps too: the first call
        hs = fixed_grid.solve_node_fixed(R, params, h0, t, torch.Size([3, 4]), interp, method, substeps=substeps,
                                         step_check=True)
    assert check_steps[1:] == ([] if compiled else [2] if grid == "uniform" else [1, 2])
    batch = torch.Size([3, 4])

    def f(s, h):
        return R(params, h if interp is None else torch.cat([h, interp(s).expand(batch + (-1,))], -1))

    k = int(hs.abs().flatten(1).amax(1)[:-1].argmax())
    ref = step_check.step_doubling_error(f, hs[k], t[k], (t[1:] - t[:-1]).max() / substeps, method)
    assert len(errs) == 1 and ref > 1e-8
    assert errs[0] == pytest.approx(ref, rel=1e-9)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_traced_solve_runs_the_autograd_loop_and_matches(monkeypatch):
    """Under torch.jit.trace (Pyro's jit_compile) the hand-written solve is bypassed: the trace replays the
    autograd step loop, with the same values and gradients as the eager hand-written solve."""
    R, Z, params, t, x, y = _setup(P=2)
    names = sorted(params)

    def logp(*values):
        d = NODETrajectory(R, Z, dict(zip(names, values)), t, x, h0=torch.zeros(3, dtype=torch.float64),
                           scale=0.3, obs_dim=2)
        return d.log_prob(y).sum()

    values = [params[k].detach().requires_grad_() for k in names]
    eager = logp(*values)
    grads = torch.autograd.grad(eager, values)
    used = []
    monkeypatch.setattr(fixed_grid, "rk_solve", lambda *a, **k: used.append(1))  # must not be called when traced
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(logp, tuple(values), check_trace=False)
    values2 = [v.detach().requires_grad_() for v in values]
    out = traced(*values2)
    assert not used
    torch.testing.assert_close(out, eager.detach())
    for g, v in zip(grads, torch.autograd.grad(out, values2)):
        torch.testing.assert_close(v, g)


def test_grid_and_stage_inputs_are_memoised_per_data_version(monkeypatch):
    """Repeated solves on the same t and x compute the stage times and inputs once; an in-place change of x is
    seen (the memo is keyed on versions), and inputs that need a gradient are never memoised."""
    monkeypatch.setattr(solve_cache, "CACHE", SolveCache())
    computed = []
    stage_inputs = fixed_grid._stage_inputs
    monkeypatch.setattr(fixed_grid, "_stage_inputs", lambda *a: computed.append(1) or stage_inputs(*a))
    R, Z, params, t, x, y = _setup()

    def mean(x):
        return _solve(R, Z, params, t, x, "fixed", step_check=False)[0].mean.detach()

    first = mean(x)
    torch.testing.assert_close(mean(x), first)
    assert len(computed) == 1
    x.mul_(2.0)  # same tensor, new values
    changed = mean(x)
    assert len(computed) == 2 and not torch.allclose(changed, first)
    torch.testing.assert_close(changed, _solve(R, Z, params, t, x.clone(), "torchdiffeq")[0].mean.detach(),
                               rtol=1e-10, atol=1e-10)
    xg = x.detach().requires_grad_()
    for _ in range(2):  # a memoised graph would fail the second backward
        d, _ = _solve(R, Z, params, t, xg, "fixed", step_check=False)
        d.log_prob(y).sum().backward()
    assert len(computed) == 4 and len(solve_cache.CACHE.grids) == 2  # x before and after the change; xg never


def test_large_stage_inputs_are_not_memoised(monkeypatch):
    monkeypatch.setattr(solve_cache, "CACHE", SolveCache(grid_max_elements=10))
    R, Z, params, t, x, _y = _setup()
    first = _solve(R, Z, params, t, x, "fixed", step_check=False)[0].mean
    assert len(solve_cache.CACHE.grids) == 0  # held nowhere: the data's size bounds what a memo keeps alive
    torch.testing.assert_close(_solve(R, Z, params, t, x, "fixed", step_check=False)[0].mean, first)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])  # the hand-written solve, and the autograd loop
def test_a_solve_in_inference_mode_leaves_nothing_autograd_cannot_use(monkeypatch, activation):
    """A first solve under torch.inference_mode (e.g. a user's prediction) must not memoise inference tensors
    that a later solve with gradients would save for backward."""
    monkeypatch.setattr(solve_cache, "CACHE", SolveCache())
    R = BatchedMLP("R", (4, 8, 3), activation=activation)
    t, x, y = torch.linspace(0, 1, 6), torch.randn(5, 6, 1), torch.randn(5, 6, 2)
    params = {k: v.expand((2, 1) + v.shape).clone() for k, v in R.init_params().items()}

    def log_p(w):
        return NODETrajectory(R, None, w, t, x, h0=torch.zeros(3), scale=0.3, obs_dim=2).log_prob(y).sum()

    with torch.inference_mode():
        first = log_p(params)
    params = {k: v.clone().requires_grad_() for k, v in params.items()}
    lp = log_p(params)
    lp.backward()
    assert torch.allclose(lp.detach(), first) and all(v.grad is not None for v in params.values())


def test_weights_as_views_of_a_flat_latent_match_torchdiffeq():
    """AutoContinuous guides (AutoLangevin's chain) hand the model non-contiguous views of one flat latent per
    particle, ``(P, 1, out, in)`` with strides over the whole latent, whose gradient flows back to that latent;
    the hand-written solve gives torchdiffeq's log p and latent gradient there, and its no-gradient solve (as
    under ``torch.no_grad``) the same log p."""
    from pyro_node_uq.nn import unflatten_params

    R, Z, params, t, x, y = _setup(P=5)
    shapes = {k: v.shape[2:] for k, v in params.items()}
    flat = torch.cat([v.reshape(5, 1, -1) for v in params.values()], -1)  # (P, 1, D): one latent per particle

    def logp(views, backend):
        return NODETrajectory(R, Z, views, t, x, h0=torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64),
                              scale=0.3, obs_dim=2, solver={"backend": backend}).log_prob(y)

    out = []
    for backend in ("fixed", "torchdiffeq"):
        z = flat.detach().requires_grad_()
        views = unflatten_params(z, shapes)
        assert not all(v.is_contiguous() for v in views.values())
        lp = logp(views, backend)
        out.append((lp.detach(), torch.autograd.grad(lp.sum(), z)[0]))
        if backend == "fixed":
            with torch.no_grad():
                torch.testing.assert_close(logp(views, backend), lp.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-10, atol=1e-10)
