"""The hand-written Normal log-densities equal torch's Normal (values and gradients, float64, 1e-12): observations
with a mask and scales that broadcast (scalar, per output, per particle) and need a gradient; the weight priors."""
import pytest
import torch

from pyro_node_uq.distributions.normal_loglik import (
    normal_log_lik,
    normal_prior_log_prob,
)


def _reference(loc, scale, value, mask):
    lp = torch.distributions.Normal(loc, scale).log_prob(value)
    if mask is not None:
        lp = torch.where(mask, lp, torch.zeros_like(lp))
    return lp.sum((-1, -2))


@pytest.mark.parametrize("scale_shape", [(), (2,), (3, 1, 1, 2)])
@pytest.mark.parametrize("masked", [False, True])
def test_observations_equal_torch_normal(scale_shape, masked):
    gen = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64)
    loc, value = r(3, 4, 5, 2), r(4, 5, 2)
    scale = (0.5 + r(*scale_shape).abs())
    mask = (r(4, 5, 2) > 0) if masked else None
    probe = r(3, 4)
    out = []
    for fn in (normal_log_lik, _reference):
        args = [v.clone().requires_grad_() for v in (loc, scale, value)]
        lp = fn(*args, mask)
        out.append((lp.detach(), torch.autograd.grad((lp * probe).sum(), args)))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_priors_equal_torch_normal():
    gen = torch.Generator().manual_seed(1)
    ws = [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in [(8, 4), (8,), (3, 8)]]
    scales = [1.0, 0.5, 2.0]
    lp = normal_prior_log_prob(ws, scales)
    want = sum(torch.distributions.Normal(0.0, s).log_prob(w).sum() for w, s in zip(ws, scales))
    torch.testing.assert_close(lp, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(lp, ws), torch.autograd.grad(want, ws)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
