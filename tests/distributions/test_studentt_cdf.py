"""studentt_log_cdf against scipy.stats.t.logcdf (float64), and its gradient against the density."""
import numpy as np
import pytest
import torch

from pyro_node_uq.distributions.studentt_cdf import studentt_log_cdf

st = pytest.importorskip("scipy.stats")
Z = torch.tensor([-200.0, -50, -10, -3, -1.01, -1, -0.99, -0.3, 0, 0.3, 1, 2.5, 10, 40], dtype=torch.float64)


@pytest.mark.parametrize("df", [1.0, 2.5, 4.0, 7.3, 30.0])
def test_matches_scipy(df):
    np.testing.assert_allclose(studentt_log_cdf(Z, df).numpy(), st.t.logcdf(Z.numpy(), df), rtol=1e-9, atol=1e-9)


def test_gradient_is_density_over_cdf():
    z = Z.clone().requires_grad_()
    studentt_log_cdf(z, 4.0).sum().backward()
    want = np.exp(st.t.logpdf(Z.numpy(), 4.0) - st.t.logcdf(Z.numpy(), 4.0))
    np.testing.assert_allclose(z.grad.numpy(), want, rtol=1e-8, atol=1e-12)
