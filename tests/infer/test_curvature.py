"""log_joint_hessian against closed forms (float64), and laplace_widths' caps."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_node_uq.infer.curvature import laplace_widths, log_joint_hessian


def _regression(X, y):
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1], dtype=X.dtype), 1.0).to_event(1))
    s = pyro.sample("s", dist.LogNormal(torch.tensor(0.0, dtype=X.dtype), 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Normal((X * w).sum(-1), s), obs=y)


def test_the_hessian_of_a_regression_with_a_scale_is_the_closed_form():
    """-log p in (w, v = log s): d2/dw2 = X'X e^{-2v} + I, d2/dw dv = 2 X' r e^{-2v}, d2/dv2 = 2 r'r e^{-2v} + 1
    (r = y - X w; the LogNormal prior is a unit Normal on v after the Jacobian), at a point that is not the mode."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64) + 0.3 * torch.randn(30, generator=g,
                                                                                      dtype=torch.float64)
    w = torch.tensor([0.8, -0.4, 0.1], dtype=torch.float64)
    s = torch.tensor(0.5, dtype=torch.float64)
    H, layout = log_joint_hessian(_regression, {"w": w, "s": s}, (X, y))
    assert layout == [("w", torch.Size([3])), ("s", torch.Size([]))]
    r, e = y - X @ w, s ** -2
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[:3, :3] = X.T @ X * e + torch.eye(3, dtype=torch.float64)
    expected[:3, 3] = expected[3, :3] = 2 * X.T @ r * e
    expected[3, 3] = 2 * (r @ r) * e + 1
    assert torch.allclose(H, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(H, H.T)


def test_blocks_and_a_missing_value():
    """Any batch size gives the same matrix; a latent site without a value is named."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(10, 5, generator=g, dtype=torch.float64)
    y = torch.randn(10, generator=g, dtype=torch.float64)
    point = {"w": torch.zeros(5, dtype=torch.float64), "s": torch.tensor(1.0, dtype=torch.float64)}
    whole, _ = log_joint_hessian(_regression, point, (X, y), batch_size=64)
    pieces, _ = log_joint_hessian(_regression, point, (X, y), batch_size=2)
    assert torch.allclose(whole, pieces, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="no value for the latent site 's'"):
        log_joint_hessian(_regression, {"w": point["w"]}, (X, y))


def test_a_non_finite_density_at_a_perturbed_point_gives_nan_columns_and_the_widest_width():
    def model():
        a = pyro.sample("a", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        pyro.sample("b", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 0.01))
        pyro.factor("wall", torch.where(a > 0.5, torch.tensor(-math.inf, dtype=a.dtype), torch.zeros_like(a)))

    H, _ = log_joint_hessian(model, {"a": torch.tensor(0.5 - 1e-5, dtype=torch.float64),
                                     "b": torch.tensor(0.0, dtype=torch.float64)}, step=1e-4)
    assert torch.isnan(H[:, 0]).all() and torch.isnan(H[0]).all()
    assert float(H[1, 1]) == pytest.approx(1e4, rel=1e-6)
    widths = laplace_widths(H, max_scale=0.05)
    assert widths.tolist() == pytest.approx([0.05, 0.01], rel=1e-6)


def test_widths_are_capped_and_non_positive_curvature_gets_the_cap():
    widths = laplace_widths(torch.tensor([4.0, 1e6, 0.0, -3.0, math.inf]), max_scale=0.1)
    assert widths.tolist() == pytest.approx([0.1, 1e-3, 0.1, 0.1, 0.1])
    assert laplace_widths(torch.diag(torch.tensor([1e4, 1.0])), 1.0).tolist() == pytest.approx([0.01, 1.0])
