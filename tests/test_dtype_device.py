"""The dtype/device rule: every tensor the package creates follows the data's (or the parameters') dtype and
device, never the global default."""
import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import metrics


@pytest.fixture
def default_dtype():
    old = torch.get_default_dtype()
    yield torch.set_default_dtype
    torch.set_default_dtype(old)


@pytest.mark.parametrize("default,data", [(torch.float32, torch.float64), (torch.float64, torch.float32)])
@pytest.mark.parametrize("solver", [{}, {"backend": "torchdiffeq"}])
def test_model_fit_and_predictive_follow_the_data_dtype(default_dtype, default, data, solver):
    default_dtype(default)
    problem = load_problem("chemical", dtype=data, num_train=3, num_test=2, num_extrapolation=2, num_times=6)
    split = problem.train
    assert split.t.dtype == data and split.y.dtype == data
    model = problem.default_model(solver=solver)
    guide = AutoNormal(model, init_loc_fn=model.init_loc_fn(0))
    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    for _ in range(2):
        assert torch.isfinite(torch.tensor(svi.step(*split.args)))
    assert all(v.dtype == data for v in pyro.get_param_store().values())
    pred = Predictive(model, guide=guide, num_samples=5, parallel=True)(split.t, split.x)
    assert pred["obs"].dtype == data and pred["y_mean"].dtype == data
    y_mean = pred["y_mean"].reshape((5,) + split.y.shape)
    for value in (metrics.rmse(y_mean, split.y), metrics.crps(y_mean, split.y),
                  metrics.predictive_nll(y_mean, split.y, 0.05), metrics.calibration_curve(y_mean, split.y)[2]):
        assert isinstance(value, float) and value == value  # noqa: PLR0124


def test_problem_and_split_move_to_a_device_and_dtype():
    problem = load_problem("chemical", dtype=torch.float64, device="cpu", num_train=2, num_test=2,
                           num_extrapolation=2, num_times=4)
    moved = problem.to(torch.float32, "cpu")
    assert moved.train.y.dtype == torch.float32 and moved.model_kwargs["init"].dtype == torch.float32
    assert moved.train.ids.dtype == torch.long  # integer and boolean tensors keep their dtype
    split = problem.test.to(device=torch.device("cpu"))
    assert split.y.dtype == torch.float64 and split.t.device.type == "cpu"
