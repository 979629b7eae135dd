"""ErrorDistribution: proper distributions from neighbours' loss trajectories."""
import pytest
import torch

from tests.infer.ltau.synthetic import synthetic


@pytest.mark.parametrize("mode", ["full", "histogram"])
def test_distributions_are_proper(mode):
    ltau, gen = synthetic(mode, n=100, epochs=30, k=7)
    pred = ltau.predict(torch.rand(20, 1, generator=gen, dtype=torch.float64))
    grid = torch.logspace(-4, 1, 200, dtype=torch.float64)
    cdf = pred.cdf(grid)
    assert cdf.shape == (20, 200)
    assert (cdf >= 0).all() and (cdf <= 1).all()
    assert (cdf.diff(dim=-1) >= 0).all()
    assert torch.allclose(cdf[:, -1], torch.ones(20, dtype=torch.float64))  # every recorded error is below 10
    levels = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    q = pred.quantile(levels)
    assert (q.diff(dim=-1) >= 0).all()
    # F(Q(p)) >= p: the quantile is the smallest value whose CDF reaches p
    at_q = torch.stack([pred.cdf(q[:, j]) for j in range(len(levels))], -1)
    assert (at_q >= levels - 1e-9).all()
    assert (pred.mean >= q[:, 0]).all() and (pred.mean <= q[:, -1]).all()
    assert (pred.distance >= 0).all()
