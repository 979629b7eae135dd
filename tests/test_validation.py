"""One validation layer: data and options that used to pass silently or end in raw errors get our messages."""
import pytest
import torch

from pyro_node_uq.data import Split, StaticSplit
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.infer import fit_svi
from pyro_node_uq.methods import run_sdebnn
from pyro_node_uq.models import SDEBNN, NODEModel
from pyro_node_uq.validation import DataScaleWarning, check_int, check_positive


def _data(dtype=torch.float64, N=2):
    t = torch.linspace(0, 1, 5, dtype=dtype)
    return t, torch.zeros(N, 5, 1, dtype=dtype), torch.zeros(N, 5, 2, dtype=dtype)


def _model(**kwargs):
    return NODEModel(obs_dim=2, input_dim=1, R_hidden=(3,), **kwargs)


@pytest.mark.parametrize("change, error, match", [
    (lambda t, x, y: (t.half(), x.half(), y.half()), TypeError, "t: expected a float32 or float64 tensor, got torch.float16"),
    (lambda t, x, y: (t, x, y.bfloat16()), TypeError, "y: expected a float32 or float64 tensor, got torch.bfloat16"),
    (lambda t, x, y: (t, x, y.long()), TypeError, r"y: .*torch.int64 \(convert with .double\(\)"),
    (lambda t, x, y: (t, x.float(), y), TypeError, "x: dtype torch.float32 differs from t's torch.float64"),
    (lambda t, x, y: (t, x, y + 1e30), ValueError, "y: values up to 1e\\+30.*standardise"),
    (lambda t, x, y: (t, x[:0], y[:0]), ValueError, r"x: no trajectories \(N=0\)"),
])
def test_bad_data_is_refused_by_name(change, error, match):
    with pytest.raises(error, match=match):
        _model()(*change(*_data()))


def test_large_data_warns():
    t, x, y = _data()
    with pytest.warns(DataScaleWarning, match="y: values up to 5e\\+04"):
        _model()(t, x, y + 5e4)


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": float("inf")}, "scale .*expected a finite number > 0, got inf"),
    ({"scale_init": float("nan")}, "scale_init: expected a finite number > 0"),
    ({"obs_dim": 2.5}, "obs_dim: expected an integer >= 1"),
    ({"R_hidden": (4, 0)}, r"R_hidden\[1\]: expected an integer >= 1"),
    ({"interpolation": "spline"}, "interpolation: expected one of"),
])
def test_bad_model_options_are_refused_by_name(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        NODEModel(**{"obs_dim": 2, **kwargs})


@pytest.mark.parametrize("lr, match", [(-0.01, "lr: expected a finite number > 0, got -0.01"),
                                       (0, "lr: expected a finite number > 0, got 0.0")])
def test_fit_svi_refuses_a_non_positive_learning_rate(lr, match):
    from pyro.infer.autoguide import AutoDelta

    model = NODEModel(obs_dim=1, R_hidden=(2,))
    split = Split(t=torch.linspace(0, 1, 3), x=None, y=torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match=match):
        fit_svi(model, AutoDelta(model), split, num_steps=2, lr=lr, progress_bar=False)


def test_counts_of_zero_are_refused_by_name():
    split = Split(t=torch.linspace(0, 1, 3), x=None, y=torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="num_chains: expected an integer >= 1, got 0"):
        to_inference_data({"a": torch.zeros(4)}, split, model=lambda *a, **k: None, num_chains=0)
    net = SDEBNN(1, 1, width=(3,), solver={"dt": 0.5})
    x = torch.linspace(-1, 1, 6)[:, None]
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        run_sdebnn(net, StaticSplit(x=x, y=x), num_steps=1, batch_size=0, progress_bar=False)


def test_option_checks():
    assert check_int(3.0, "n") == 3
    with pytest.raises(TypeError, match="n: expected an integer >= 1, got 1e\\+30"):
        check_int(1e30, "n", 1)
    with pytest.raises(TypeError, match="n: expected an integer, got True"):
        check_int(True, "n")
    with pytest.raises(ValueError, match="n: expected an integer >= 1 and <= 5, got 6"):
        check_int(6, "n", 1, 5)
    assert check_positive(0, "rate", allow_zero=True) == 0.0
    with pytest.raises(TypeError, match="rate: expected a finite number > 0, got 'abc'"):
        check_positive("abc", "rate")


def test_on_divergence_is_one_checked_value():
    from pyro_node_uq.validation import OnDivergence

    mode = OnDivergence("reject")
    assert mode == "reject" and repr(mode) == "'reject'" and OnDivergence(mode) is mode
    assert isinstance(NODEModel(obs_dim=1, on_divergence="reject").on_divergence, OnDivergence)
    with pytest.raises(ValueError, match="on_divergence: expected 'raise' or 'reject', got 'ignore'"):
        NODEModel(obs_dim=1, on_divergence="ignore")


def test_per_unit_times_are_checked_by_the_same_rule():
    from pyro_node_uq.validation import check_times

    t = torch.tensor([[0.0, 1.0, 5.0, 2.0], [0.0, 3.0, 3.0, 4.0]])
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    with pytest.raises(ValueError, match=r"t: times must be strictly increasing; duplicated at unit 1, index 2 "
                                         r"\(3.0 then 3.0\)"):
        check_times(t, "t", mask)  # unit 0 skips its padding (5.0) and is sorted
    with pytest.raises(ValueError, match=r"unsorted at unit 0, index 3 \(5.0 then 2.0\)"):
        check_times(t, "t")
