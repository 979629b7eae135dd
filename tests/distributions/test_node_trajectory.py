import pytest
import torch

from pyro_node_uq.distributions import (
    Interpolator,
    NODEDivergenceError,
    NODETrajectory,
    ODESolver,
)
from pyro_node_uq.nn import BatchedMLP

R = BatchedMLP("R", (3 + 1, 8, 3))
Z = BatchedMLP("Z", (3 + 1, 5, 2))
T = 12


def _params(P, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = {**R.param_shapes(), **Z.param_shapes()}
    return {k: 0.7 * torch.randn(((P, 1) if P else ()) + v, generator=gen) for k, v in shapes.items()}


def _data(traj_batch, seed=1):
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 2, T)
    x = torch.randn(traj_batch + (T, 1), generator=gen)
    y = torch.randn(traj_batch + (T, 2), generator=gen)
    return t, x, y


def _dist(params, t, x, **kw):
    return NODETrajectory(R, Z, params, t, x, h0=torch.zeros(3), scale=0.3, **kw)


@pytest.mark.parametrize("P", [1, 8])
@pytest.mark.parametrize("traj_batch", [(4,), (2, 3), (1,)])
def test_log_prob_vectorised_equals_particle_loop(P, traj_batch):
    t, x, y = _data(traj_batch)
    params = _params(P)
    if len(traj_batch) == 2:  # particle dims must sit left of every trajectory dim
        params = {k: v.unsqueeze(1) for k, v in params.items()}
    d = _dist(params, t, x)
    assert d.batch_shape == (P,) + traj_batch and d.event_shape == (T, 2)
    lp = d.log_prob(y)
    for p in range(P):
        single = {k: v[p, 0] if len(traj_batch) == 1 else v[p, 0, 0] for k, v in params.items()}
        ref = _dist(single, t, x).log_prob(y)
        assert ref.shape == traj_batch
        assert torch.allclose(lp[p], ref, rtol=0, atol=1e-10)


def test_gradients_finite_and_adjoint_matches_direct():
    t, x, y = _data((3,))
    results = []
    for adjoint in (False, True):
        params = {k: v.clone().requires_grad_() for k, v in _params(4).items()}
        solver = ODESolver(method="dopri5", rtol=1e-11, atol=1e-11, adjoint=adjoint)
        lp = _dist(params, t, x, solver=solver).log_prob(y).sum()
        grads = torch.autograd.grad(lp, list(params.values()))
        assert all(torch.isfinite(g).all() for g in grads)
        results.append((lp.detach(), grads))
    (lp0, g0), (lp1, g1) = results
    assert torch.allclose(lp0, lp1, atol=1e-9)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()


def test_sample_rsample_expand_and_mask():
    t, x, y = _data((4,))
    d = _dist(_params(3), t, x)
    assert d.sample().shape == (3, 4, T, 2)
    assert d.rsample((5,)).shape == (5, 3, 4, T, 2)
    assert torch.allclose(d.sample((4000,)).mean(0), d.mean, atol=0.05)
    e = d.expand((2, 3, 4))
    assert e.batch_shape == (2, 3, 4) and torch.allclose(e.log_prob(y)[1], d.log_prob(y))
    mask = torch.zeros(4, T, 2, dtype=torch.bool)
    mask[:, :6] = True
    dm = _dist(_params(3), t, x, mask=mask)
    full = torch.distributions.Normal(d.mean, 0.3).log_prob(y)
    assert torch.allclose(dm.log_prob(y), full[..., :6, :].sum((-1, -2)))


def test_studentt_noise_and_no_inputs():
    t, x, y = _data((4,))
    d = _dist(_params(2), t, x, noise="studentt", df=3.0)
    ref = torch.distributions.StudentT(3.0, d.mean, 0.3).log_prob(y).sum((-1, -2))
    assert torch.allclose(d.log_prob(y), ref)
    R0 = BatchedMLP("R", (2, 4, 2))
    params = R0.init_params()
    d0 = NODETrajectory(R0, None, params, t, None, h0=torch.ones(4, 2), scale=0.1, obs_dim=1)
    assert d0.batch_shape == (4,) and d0.event_shape == (T, 1)
    assert torch.allclose(d0.mean, d0.hidden[..., :1])


def test_divergence_is_detected():
    t = torch.linspace(0, 5, 10)
    Rr = BatchedMLP("R", (1, 1), activation="relu")
    params = {"R.0.weight": torch.tensor([[1e3], [1.0]]).reshape(2, 1, 1), "R.0.bias": torch.zeros(2, 1)}
    h0 = torch.ones(1)
    bad = NODETrajectory(Rr, None, params, t, None, h0=h0, scale=1.0, obs_dim=1)
    with pytest.raises(NODEDivergenceError, match="diverged for 1 of 2"):
        bad.log_prob(torch.zeros(10, 1))
    rej = NODETrajectory(Rr, None, params, t, None, h0=h0, scale=1.0, obs_dim=1, on_divergence="reject")
    with pytest.warns(RuntimeWarning, match="scored as -inf"):
        lp = rej.log_prob(torch.zeros(10, 1))
    assert lp[0] == -float("inf") and torch.isfinite(lp[1])


def test_bad_arguments():
    t, x, _y = _data((4,))
    with pytest.raises(ValueError, match="noise"):
        _dist(_params(1), t, x, noise="cauchy")
    with pytest.raises(ValueError, match="missing parameter 'Z.1.bias'"):
        _dist({k: v for k, v in _params(1).items() if k != "Z.1.bias"}, t, x)
    with pytest.raises(ValueError, match="must end in shape"):
        _dist({**_params(1), "R.0.weight": torch.randn(8, 3)}, t, x)
    with pytest.raises(ValueError, match="scale"):
        NODETrajectory(R, Z, _params(1), t, x, scale=-1.0, validate_args=True)
    with pytest.raises(ValueError, match="unknown options"):
        ODESolver.coerce({"methd": "rk4"})


def test_interpolation():
    t = torch.linspace(0, 1, 11)
    x = torch.stack([3 * t + 1, t**2], -1)
    lin = Interpolator(t, x, "linear")
    assert torch.allclose(lin(torch.tensor(0.33)), torch.tensor([1.99, 0.111]), atol=1e-12)
    cub = Interpolator(t, x, "cubic")
    s = torch.tensor(0.55)  # interior interval: centred slopes make the Hermite cubic exact for quadratics
    assert torch.allclose(cub(s), torch.stack([3 * s + 1, s**2]), atol=1e-12)
    assert torch.allclose(lin(torch.tensor(5.0)), x[-1])  # held constant outside the grid
    assert torch.equal(lin.at_grid(t), x)


def test_fast_fixed_grid_path_checks_its_step_too():
    """A fixed-step method on the observation grid (the fast path) warns when its step is far above the stable
    step, as the torchdiffeq path does; a stable grid does not warn."""
    import warnings

    from pyro_node_uq.distributions.step_check import StepSizeWarning

    t, x, _ = _data((2,))
    # R(h) ~ -20 h near 0 (a small first layer, a large second): Euler on the grid spacing 0.18 is far past stable
    params = {k: torch.zeros((1, 1) + v) for k, v in R.param_shapes().items()}
    params["R.0.weight"][..., :3, :3] = 0.001 * torch.eye(3)
    params["R.1.weight"][..., :3, :3] = -20000.0 * torch.eye(3)
    params.update({k: 0.1 * torch.ones((1, 1) + v) for k, v in Z.param_shapes().items()})
    euler = ODESolver(method="euler")
    assert euler.fixed_grid  # a fixed-step method without step_size: the fast path
    with pytest.warns(StepSizeWarning, match="far above"):
        NODETrajectory(R, Z, params, t, x, h0=0.1 * torch.ones(3), scale=0.3, solver=euler,  # noqa: B018
                       on_divergence="reject").mean
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepSizeWarning)
        _dist(_params(1), torch.linspace(0, 2, 200), torch.zeros(2, 200, 1), solver=euler).mean  # noqa: B018
