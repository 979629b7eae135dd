"""GuardedSVI: Pyro's SVI step by hand, a non-finite gradient skipped without moving a parameter, and the error
after ``max_skips`` consecutive skips naming the parameter."""
import pyro
import pytest
import torch

from pyro_node_uq.infer import GuardedSVI


def _svi(poison, **kwargs):
    """SGD (lr 0.1) on the loss (w - 1)^2 from w = 0; ``poison()`` true makes w's gradient NaN (the loss stays
    finite: d sqrt(u)/du at u = 0 is inf, times du/dw = 0)."""
    def model():
        w = pyro.param("w", torch.zeros(()))
        f = -(w - 1.0) ** 2 + (torch.sqrt(w - w) if poison() else 0.0)
        pyro.factor("f", f)

    return GuardedSVI(model, lambda: None, pyro.optim.SGD({"lr": 0.1}), pyro.infer.Trace_ELBO(), **kwargs)


def _w():
    return pyro.param("w").detach().item()


def test_a_finite_step_is_pyros_sgd_step_by_hand():
    pyro.clear_param_store()
    svi = _svi(lambda: False)
    assert svi.step() == pytest.approx(1.0)  # (0 - 1)^2
    assert _w() == pytest.approx(0.2)  # 0 - 0.1 * 2 (0 - 1)
    assert svi.step() == pytest.approx(0.64) and _w() == pytest.approx(0.36)
    assert svi.skipped == 0


def test_a_non_finite_gradient_is_skipped_without_moving_and_the_run_is_reset_by_a_good_step():
    pyro.clear_param_store()
    steps = iter([False, True, True, False, True])
    svi = _svi(lambda: next(steps), max_skips=3)
    svi.step()
    assert _w() == pytest.approx(0.2)
    svi.step()
    svi.step()
    assert _w() == pytest.approx(0.2) and svi.skipped == 2  # no NaN reached the parameter
    assert pyro.param("w").unconstrained().grad is None or float(pyro.param("w").unconstrained().grad.detach()) == 0.0
    svi.step()  # a good step resets the run of skips
    assert _w() == pytest.approx(0.36)
    svi.step()
    assert svi.skipped == 3 and svi._run == 1


def test_max_skips_consecutive_rejections_name_the_parameter():
    pyro.clear_param_store()
    svi = _svi(lambda: True, max_skips=2)
    svi.step()
    with pytest.raises(FloatingPointError, match=r"2 consecutive steps had non-finite gradients of \['w'\]"):
        svi.step()
    assert torch.isfinite(pyro.param("w")) and _w() == 0.0


def test_guarded_svi_rejects_a_bad_max_skips():
    with pytest.raises(ValueError, match="max_skips must be >= 1, got 0"):
        GuardedSVI(lambda: None, lambda: None, pyro.optim.Adam({"lr": 0.1}), pyro.infer.Trace_ELBO(), max_skips=0)
