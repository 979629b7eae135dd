"""Precision checks of the public trajectory distributions: half precision and bfloat16 refused by argument
(an ODE solve in them was a mean off by 0.13), and weights and data of two dtypes named by site before the
compiled solver loop sees them."""
import pytest
import torch

from pyro_node_uq.distributions import NODEObservation, NODETrajectory
from pyro_node_uq.nn import BatchedMLP

R, Z = BatchedMLP("R", (3, 8, 2)), BatchedMLP("Z", (3, 1))


def _args(dtype=torch.float32, params_dtype=None):
    gen = torch.Generator().manual_seed(0)
    params = {k: v.to(params_dtype or dtype) for k, v in {**R.init_params(gen), **Z.init_params(gen)}.items()}
    t = torch.linspace(0, 1, 6, dtype=dtype)
    return params, t, torch.randn(4, 6, 1, generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused(dtype):
    params, t, x = _args(dtype)
    with pytest.raises(TypeError, match=rf"t: dtype {dtype} is too coarse for an ODE solve.*float32 or float64"):
        NODETrajectory(R, Z, params, t, x, h0=torch.zeros(2, dtype=dtype), scale=0.1)
    params, t, x = _args(torch.float32, params_dtype=dtype)
    with pytest.raises(TypeError, match=rf"params\['R.0.weight'\]: dtype {dtype} is too coarse"):
        NODETrajectory(R, Z, params, t, x, scale=0.1)
    with pytest.raises(TypeError, match=rf"loc: dtype {dtype} is too coarse"):
        NODEObservation(torch.zeros(2, 6, 1, dtype=dtype), 0.1)


def test_weights_and_data_in_two_dtypes_are_named():
    params, t, x = _args(torch.float64, params_dtype=torch.float32)  # a float32 fit, NumPy's float64 data
    with pytest.raises(TypeError, match=r"params\['R.0.weight'\]: dtype torch.float32, but the data \(t\) are "
                                        r"torch.float64.*split.to\(dtype=torch.float32\)"):
        NODETrajectory(R, Z, params, t, x, scale=0.1)
    params, t, x = _args(torch.float32)
    with pytest.raises(TypeError, match=r"x: dtype torch.float64 differs from t's torch.float32"):
        NODETrajectory(R, Z, params, t, x.double(), scale=0.1)
    d = NODETrajectory(R, Z, params, t, x, scale=0.1)  # one dtype: fine
    assert d.mean.dtype == torch.float32
