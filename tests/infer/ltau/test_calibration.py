"""ErrorCalibration: a scale is recovered and improves coverage; distance scaling out of domain."""
import pytest
import torch

from pyro_node_uq.infer.ltau import ErrorCalibration, calibration_error
from tests.infer.ltau.synthetic import synthetic


def test_calibration_recovers_a_scale_and_improves_coverage():
    ltau, gen = synthetic("full", k=10)
    def validation(n):
        x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        true = -2.5 * (0.1 + x[:, 0]) * torch.rand(n, generator=gen, dtype=torch.float64).log()  # 2.5x larger
        return ltau.predict(x), true
    val, val_err = validation(400)
    held, held_err = validation(400)
    before = calibration_error(held, held_err)
    cal = ltau.calibrate(val, val_err, method="scale", distance_scaling=False)
    assert cal.scale == pytest.approx(2.5, rel=0.15)
    for method in ("scale", "isotonic"):
        ltau.calibrate(val, val_err, method=method)
        after = calibration_error(held.with_calibration(ltau.calibration), held_err)
        assert before > 0.15 and after < 0.05, (method, before, after)
        calibrated = ltau.predict(held_err.new_tensor([[0.5]]))
        assert calibrated.calibration is ltau.calibration
        levels = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
        assert (calibrated.quantile(levels).diff(dim=-1) >= 0).all()
        assert (calibrated.cdf(torch.logspace(-3, 1, 50)).diff(dim=-1) >= 0).all()
    with pytest.raises(ValueError, match="method"):
        ltau.calibrate(val, val_err, method="platt")
    with pytest.raises(ValueError, match="errors: expected one error per point"):
        ltau.calibrate(val, val_err[:3])


def test_distance_scaling_is_chosen_when_errors_grow_out_of_domain():
    ltau, gen = synthetic("full", k=10)
    x = 1.5 * torch.rand(600, 1, generator=gen, dtype=torch.float64)  # one third beyond the training range
    pred = ltau.predict(x)
    err = -(0.1 + x[:, 0]) * (1 + 20 * pred.distance) * torch.rand(600, generator=gen, dtype=torch.float64).log()
    assert ErrorCalibration.fit(pred, err, method="scale").distance_coef > 0
    assert ErrorCalibration.fit(pred, err, distance_scaling=False).distance_coef == 0
