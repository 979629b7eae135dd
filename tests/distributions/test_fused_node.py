"""The NODE solve as one autograd node: states, observed means, divergence flags and the gradients of the weights
and of the initial state equal those of the general path (the same compiled solve inside separate torch ops) to
1e-12 in float64, over weight layouts (shared and per-trajectory, broadcast weights), hidden depths, inputs or none,
substeps, a batched initial state; diverged members flagged and scored as in the general path; where it does not
apply (observation network, doses, a trace) it declines and the general path runs; the clear errors on bad data stay."""
import pytest
import torch

from pyro_node_uq.distributions import (
    NODEDivergenceError,
    NODETrajectory,
    fused_node,
    node_solve,
    rk_fused,
)
from pyro_node_uq.nn import BatchedMLP


@pytest.fixture(scope="module")
def built():
    if rk_fused.library() is None:
        pytest.skip("no compiler: the compiled solve (and so this path) is not available")


def _general(monkeypatch):
    monkeypatch.setattr(node_solve, "fused_node_solve", lambda *a, **k: None)


def _run(R, params, t, x, h0, y, solver=None, **kw):
    """log p, states, and the gradients of ``log p + <states, probe>`` in the weights and ``h0``."""
    ps = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    h = h0.detach().clone().requires_grad_()
    d = NODETrajectory(R, None, ps, t, x, h0=h, scale=0.3, obs_dim=2, solver=solver, **kw)
    lp = d.log_prob(y)
    probe = torch.randn(d.hidden.shape, generator=torch.Generator().manual_seed(3), dtype=t.dtype)
    grads = torch.autograd.grad(lp.sum() + (d.hidden * probe).sum(), [*ps.values(), h])
    return lp.detach(), d.hidden.detach(), d.mean.detach(), d.diverged, grads, type(d.mean.grad_fn).__name__


CASES = {  # particle dims, units, hidden widths, inputs, h0 shape, substeps
    "one particle": ((1, 1), 16, (32,), True, (3,), 1),
    "unbatched weights": ((), 5, (8,), True, (3,), 1),
    "particles": ((4, 1), 5, (8,), True, (3,), 1),
    "per-unit weights, two layers, substeps": ((2, 5), 5, (6, 7), True, (3,), 2),
    "no inputs, batched h0": ((3, 1), 5, (8,), False, (3, 1, 3), 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_the_general_path_in_float64(built, monkeypatch, case):
    pb, N, hidden, inputs, h0_shape, substeps = CASES[case]
    gen = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    R = BatchedMLP("R", (3 + int(inputs), *hidden, 3))
    params = {k: 0.5 * r(*(pb + s)) for k, s in R.param_shapes().items()}
    params["R.0.bias"] = 0.5 * r(hidden[0])  # one weight broadcast over the ensemble
    t = torch.linspace(0, 2, 9, dtype=torch.float64)
    x = r(N, 9, 1) if inputs else None
    args = (R, params, t, x, r(*h0_shape), r(N, 9, 2), {"substeps": substeps})
    fused = _run(*args)
    assert fused[5] == "_FusedNODESolveBackward", "the fused path did not run"
    _general(monkeypatch)
    general = _run(*args)
    for a, b in zip(fused[:3], general[:3]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.equal(fused[3], general[3])
    assert general[5] != fused[5]
    for a, b in zip(fused[4], general[4]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _diverging():
    R = BatchedMLP("R", (1, 4, 1))
    params = {"R.0.weight": torch.full((3, 1, 4, 1), 3.0, dtype=torch.float64),
              "R.0.bias": torch.zeros(4, dtype=torch.float64),
              "R.1.weight": torch.tensor([1.0, 1e5, 1.0], dtype=torch.float64)[:, None, None, None].expand(3, 1, 1, 4),
              "R.1.bias": torch.zeros(1, dtype=torch.float64)}
    return R, params, torch.linspace(0, 20, 5, dtype=torch.float64), torch.ones(1, dtype=torch.float64)


def test_divergence_is_flagged_raised_and_scored_as_in_the_general_path(built, monkeypatch):
    R, params, t, h0 = _diverging()
    y = torch.zeros(2, 5, 1, dtype=torch.float64)
    with pytest.raises(NODEDivergenceError, match="diverged"):
        NODETrajectory(R, None, params, t, None, h0=h0, obs_dim=1).log_prob(y)
    out = []
    for general in (False, True):
        if general:
            _general(monkeypatch)
        d = NODETrajectory(R, None, params, t, torch.zeros(2, 5, 0, dtype=torch.float64), h0=h0, obs_dim=1,
                           on_divergence="reject")
        with pytest.warns(RuntimeWarning, match="scored as -inf"):
            d.solution  # noqa: B018 - the solve, lazily
        out.append((d.log_prob(y), d.diverged, d.hidden))
    (lp1, bad1, h1), (lp2, bad2, h2) = out
    assert bad1.flatten().tolist() == [False, True, False] and torch.equal(bad1, bad2)
    assert torch.isinf(lp1[1]).all() and torch.isfinite(lp1[0]).all()
    torch.testing.assert_close(lp1, lp2, rtol=1e-12, atol=0)
    torch.testing.assert_close(h1, h2, rtol=1e-12, atol=1e-12)


def test_declines_where_it_does_not_apply(built):
    R = BatchedMLP("R", (3, 8, 3))
    params = R.init_params(dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    batch = torch.Size([4])
    assert fused_node.fused_node_solve(R, params, torch.zeros(3, dtype=torch.float64), t, None, batch,
                                       node_solve.ODESolver(), 2) is not None
    for solver in ({"method": "dopri5"}, {"backward": "autograd"}, {"compile": True}):
        assert fused_node.fused_node_solve(R, params, torch.zeros(3, dtype=torch.float64), t, None, batch,
                                           node_solve.ODESolver.coerce(solver), 2) is None
    relu = BatchedMLP("R", (3, 8, 3), activation="relu")
    assert fused_node.fused_node_solve(relu, relu.init_params(dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                                       t, None, batch, node_solve.ODESolver(), 2) is None
    assert fused_node.fused_node_solve(R, params, torch.zeros(3, dtype=torch.float64), t.expand(4, 5), None, batch,
                                       node_solve.ODESolver(), 2) is None


@pytest.mark.parametrize("bad, match", [
    ({"y": float("nan")}, "support"),
    ({"t": "unsorted"}, "t"),
    ({"x": float("nan")}, "x: inputs contain NaN"),
    ({"y_shape": (16, 41, 3)}, "shape"),
])
def test_bad_data_keeps_its_clear_error(built, bad, match):
    """Checks done once per data tensor still catch bad data, also after good data were seen."""
    R = BatchedMLP("R", (4, 8, 3))
    params = {k: v.double() for k, v in R.init_params().items()}
    t, x, y = torch.linspace(0, 1, 41, dtype=torch.float64), torch.zeros(16, 41, 1, dtype=torch.float64), \
        torch.zeros(16, 41, 2, dtype=torch.float64)
    NODETrajectory(R, None, params, t, x, h0=torch.zeros(3, dtype=torch.float64), obs_dim=2).log_prob(y)
    if "y" in bad:
        y = y.clone()
        y[3, 5, 1] = bad["y"]
    if "t" in bad:
        t = t.flip(0)
    if "x" in bad:
        x = x.clone()
        x[0, 0, 0] = bad["x"]
    if "y_shape" in bad:
        y = torch.zeros(bad["y_shape"], dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        NODETrajectory(R, None, params, t, x, h0=torch.zeros(3, dtype=torch.float64), obs_dim=2,
                       validate_args=True).log_prob(y)
