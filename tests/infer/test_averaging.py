import pyro
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer import fit_svi
from pyro_node_uq.infer.averaging import TailAverage


def _set(name, value):
    with torch.no_grad():
        pyro.param(name).fill_(value)


def test_tail_average_is_the_mean_of_the_last_share_of_steps_in_whole_blocks():
    pyro.clear_param_store()
    pyro.param("w", torch.zeros(()))
    avg = TailAverage(0.3, block=2)
    for step in range(10):  # w = 0 .. 9; the last 3 steps round up to the blocks {6, 7} and {8, 9}
        _set("w", float(step))
        if step == 7:
            pyro.param("late", torch.zeros(2))  # appears part way: averaged over the steps it exists for
        if step >= 7:
            _set("late", 10.0 * step)
        avg.update()
    mean = avg.mean()
    assert float(mean["w"]) == pytest.approx(7.5)
    assert torch.allclose(mean["late"], torch.full((2,), 80.0))
    avg.load()
    assert float(pyro.param("w").detach()) == pytest.approx(7.5)


def test_tail_average_over_a_partial_last_block_and_bad_fraction():
    pyro.clear_param_store()
    pyro.param("w", torch.zeros(()))
    avg = TailAverage(0.2, block=4)
    for step in range(5):  # blocks {0..3} and {4}: the last ceil(0.2 * 5) = 1 step is the partial block
        _set("w", float(step))
        avg.update()
    assert float(avg.mean()["w"]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match=r"average_tail must be in \(0, 1\], got 1.5"):
        TailAverage(1.5)


def test_fit_svi_ends_at_the_mean_of_its_last_iterates():
    """A quadratic loss with a noisy optimum fitted at a constant learning rate: with ``average_tail=0.5`` the fit
    ends at the mean of the iterates of its last 100 steps (recorded by the callback), not at the last one, and
    nearer the optimum than the last one."""
    problem = load_problem("chemical", num_train=2)
    seen = []

    def model(*args, **kwargs):
        w = pyro.param("w", torch.tensor(5.0))
        pyro.factor("f", -0.5 * (w - 1.0 - torch.randn(())) ** 2)  # a stochastic gradient: iterates scatter

    def guide(*args, **kwargs):
        pass

    def record(step, loss):
        seen.append(float(pyro.param("w").detach()))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    fit_svi(model, guide, problem.train, num_steps=200, lr=0.1, lr_final=0.1, progress_bar=False, callback=record,
            average_tail=0.5)
    assert abs(seen[-1] - seen[-2]) > 1e-3  # the last iterates still move: the mean differs from the last one
    mean = sum(seen[100:]) / 100
    assert float(pyro.param("w").detach()) == pytest.approx(mean, rel=1e-5)
    assert abs(float(pyro.param("w").detach()) - 1.0) < 0.5 * abs(seen[-1] - 1.0)


def test_fit_svi_cosine_schedule_follows_half_a_cosine_from_lr_to_lr_final():
    problem = load_problem("chemical", num_train=2)
    rates = []

    def model(*args, **kwargs):
        w = pyro.param("w", torch.tensor(5.0))
        pyro.factor("f", -0.5 * (w - 1.0) ** 2)

    def guide(*args, **kwargs):
        pass

    def record(step, loss):
        opt = next(iter(pyro.get_param_store().named_parameters()))  # noqa: F841  (the store holds w)
        rates.append(svi_rates())

    pyro.clear_param_store()
    seen = {}

    def svi_rates():
        return seen["rate"]

    import pyro_node_uq.infer.svi as svi_module
    original = svi_module.GuardedSVI.step

    def step(self, *args, **kwargs):
        value = original(self, *args, **kwargs)
        seen["rate"] = next(iter(self.optim.optim_objs.values())).param_groups[0]["lr"]
        return value

    svi_module.GuardedSVI.step = step
    try:
        fit_svi(model, guide, problem.train, num_steps=100, lr=0.1, lr_final=0.001, lr_schedule="cosine",
                progress_bar=False, callback=record)
    finally:
        svi_module.GuardedSVI.step = original
    assert rates[0] == pytest.approx(0.1) and rates[50] == pytest.approx(0.0505) and rates[99] < 0.0011
    with pytest.raises(ValueError, match="lr_schedule must be 'geometric' or 'cosine', got 'step'"):
        fit_svi(model, guide, problem.train, num_steps=2, lr_schedule="step", progress_bar=False)
