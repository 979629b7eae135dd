"""Interpolator: linear is exact on linear inputs, cubic Hermite on quadratics inside the grid, the ends are held,
and the vectorised grid evaluation equals pointwise calls."""
import pytest
import torch

from pyro_node_uq.distributions.interpolation import Interpolator

D = torch.float64


@pytest.fixture
def grid():
    return torch.linspace(0.0, 2.0, 9, dtype=D)


def test_linear_is_exact_on_linear_inputs(grid):
    x = torch.stack([3.0 * grid - 1.0, -grid], dim=-1)[None].expand(2, -1, -1)  # (2, T, 2)
    f = Interpolator(grid, x)
    t = torch.tensor([0.1, 0.77, 1.999], dtype=D)
    expected = torch.stack([3.0 * t - 1.0, -t], dim=-1)
    torch.testing.assert_close(f.at_grid(t), expected.expand(2, -1, -1), rtol=0, atol=1e-12)


def test_cubic_is_exact_on_quadratics_between_interior_knots(grid):
    x = (grid ** 2 - grid)[:, None]
    f = Interpolator(grid, x, kind="cubic")
    t = torch.linspace(float(grid[1]), float(grid[-2]), 37)  # central-difference slopes are exact inside
    torch.testing.assert_close(f.at_grid(t)[:, 0], t ** 2 - t, rtol=0, atol=1e-12)
    assert (f.at_grid(t)[:, 0] - Interpolator(grid, x).at_grid(t)[:, 0]).abs().max() > 1e-3  # linear is not


def test_ends_are_held_and_grid_equals_pointwise(grid):
    x = torch.sin(grid)[None, :, None]
    f = Interpolator(grid, x, kind="cubic")
    torch.testing.assert_close(f(-1.0), x[:, 0])
    torch.testing.assert_close(f(5.0), x[:, -1])
    t = torch.tensor([-0.5, 0.0, 0.3, 1.1, 2.0, 2.5], dtype=D)
    torch.testing.assert_close(f.at_grid(t), torch.stack([f(s) for s in t], dim=-2))
    assert f.at_grid(grid) is x  # the sample grid itself costs nothing


def test_a_single_sample_is_constant_and_a_bad_kind_is_named(grid):
    x = torch.tensor([[2.0, 3.0]], dtype=D)
    f = Interpolator(grid[:1], x)
    torch.testing.assert_close(f(1.3), x[0])
    assert f.at_grid(grid).shape == (9, 2)
    with pytest.raises(ValueError, match="interpolation must be 'linear' or 'cubic'"):
        Interpolator(grid, x, kind="spline")
