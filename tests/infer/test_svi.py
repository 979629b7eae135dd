import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import fit_svi
from pyro_node_uq.methods import run_map


def test_fit_svi_rejects_bad_arguments_and_non_finite_loss():
    problem = load_problem("chemical", num_train=2)
    model = problem.default_model()
    with pytest.raises(ValueError, match="num_steps: expected an integer >= 1, got 0"):
        run_map(model, problem.train, num_steps=0)
    bad = problem.train.to(torch.float64)
    bad.y = bad.y * float("inf")
    with pytest.raises(ValueError, match="y: observations contain NaN or inf"):
        run_map(model, bad, num_steps=2, progress_bar=False)

    def guide(*args, **kwargs):
        pass

    def model_inf(*args, **kwargs):
        import pyro

        pyro.factor("f", torch.tensor(float("inf")))

    with pytest.raises(FloatingPointError, match="the loss became -inf at step 0"):
        fit_svi(model_inf, guide, problem.train, num_steps=3, progress_bar=False)


class _NaNGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        return torch.zeros_like(w)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def test_fit_svi_names_a_parameter_that_a_nan_gradient_corrupted():
    import pyro

    problem = load_problem("chemical", num_train=2)

    def model(*args, **kwargs):
        pyro.factor("f", _NaNGradient.apply(pyro.param("w", torch.ones(2))).sum())  # finite loss, NaN gradient

    def guide(*args, **kwargs):
        pass

    with pytest.raises(FloatingPointError, match=r"10 consecutive steps had non-finite gradients of \['w'\]"):
        fit_svi(model, guide, problem.train, num_steps=20, progress_bar=False)
    assert torch.equal(pyro.param("w"), torch.ones(2))  # never moved: nothing the user had is corrupted


def test_guarded_svi_skips_a_rare_non_finite_gradient_and_says_so():
    import pyro
    import pyro.distributions as dist

    problem = load_problem("chemical", num_train=2)
    calls = []

    def model(*args, **kwargs):
        w = pyro.param("w", torch.zeros(()))
        calls.append(1)
        f = _NaNGradient.apply(w) if len(calls) == 3 else -(w - 1.0) ** 2  # one poisoned step out of 30
        pyro.factor("f", f)
        pyro.sample("x", dist.Normal(0.0, 1.0))

    guide = pyro.infer.autoguide.AutoNormal(lambda *a, **k: pyro.sample("x", dist.Normal(0.0, 1.0)))
    with pytest.warns(RuntimeWarning, match="1 of 30 steps were skipped for non-finite gradients"):
        fit = fit_svi(model, guide, problem.train, num_steps=30, lr=0.1, progress_bar=False)
    assert fit.skipped_steps == 1 and torch.isfinite(pyro.param("w")) and float(pyro.param("w").detach()) > 0.5


def test_fit_svi_scales_the_learning_rate_of_the_named_parameters():
    """Adam's first step moves every coordinate by its learning rate (x the decay): ``lr_scales`` sets it per
    parameter; bad multipliers are refused by name."""
    from types import SimpleNamespace

    import pyro
    import pyro.distributions as dist

    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))

    def guide():
        for name in "ab":
            pyro.sample(name, dist.Delta(pyro.param(f"q_{name}", torch.tensor(1.0))))

    split = SimpleNamespace(args=(), kwargs={})
    pyro.clear_param_store()
    fit_svi(model, guide, split, num_steps=1, lr=0.1, lr_final=0.01, lr_scales={"q_a": 0.01}, progress_bar=False)
    decay = 0.1  # (lr_final / lr) ** (1 / num_steps), applied before the step
    assert float(1 - pyro.param("q_a").detach()) == pytest.approx(0.1 * 0.01 * decay, rel=1e-4)
    assert float(1 - pyro.param("q_b").detach()) == pytest.approx(0.1 * decay, rel=1e-4)
    with pytest.raises(ValueError, match=r"lr_scales\['q_a'\]: expected a finite number > 0, got 0"):
        fit_svi(model, guide, split, num_steps=1, lr_scales={"q_a": 0}, progress_bar=False)
    with pytest.raises(TypeError, match="lr_scales must be a dict"):
        fit_svi(model, guide, split, num_steps=1, lr_scales=[0.1], progress_bar=False)
