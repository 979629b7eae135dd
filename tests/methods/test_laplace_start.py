"""laplace_start: the mean-field optimum of a Gaussian posterior (float64), Pyro's two Gaussian guides, and the
runners' Laplace-started fits."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import (
    AutoDelta,
    AutoLowRankMultivariateNormal,
    AutoNormal,
    init_to_value,
)

from pyro_node_uq.data import Split
from pyro_node_uq.methods import as_process_model, run_autonormal, run_lowrank, run_map
from pyro_node_uq.methods.laplace_start import laplace_start

Y = torch.tensor([1.2, 0.4, 2.0, 0.9], dtype=torch.float64)


def sum_of_means(t, x=None, y=None, num_trajectories=None):
    """y_n ~ N(mu + nu, 1): the posterior precision is [[1 + n, n], [n, 1 + n]], so the mean-field optimum has
    std (1 + n)^-1/2 in both coordinates (not the marginal std, ((1 + 2n) / (1 + n)^2 ... ) = (5/9)^1/2 for n = 4)."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros((), dtype=t.dtype), 1.0))
    nu = pyro.sample("nu", dist.Normal(torch.zeros((), dtype=t.dtype), 1.0))
    with pyro.plate("trajectories", y.shape[0], dim=-1):
        pyro.sample("obs", dist.Normal(mu + nu, 1.0), obs=y)


@pytest.fixture
def gaussian():
    split = Split(t=torch.zeros(1, dtype=torch.float64), x=None, y=Y)
    mode = float(Y.sum()) / 9  # mu = nu at the mode: (1 + 2n) m = sum(y)
    values = {"mu": torch.tensor(mode, dtype=torch.float64), "nu": torch.tensor(mode, dtype=torch.float64)}
    return as_process_model(sum_of_means, split), split, values


def _guide(cls, model, split, values, **kwargs):
    pyro.clear_param_store()
    guide = cls(model, init_loc_fn=init_to_value(values=values), **kwargs)
    guide(*split.args, **split.kwargs)
    return guide


def test_autonormal_starts_at_the_mean_field_optimum_of_a_gaussian_posterior(gaussian):
    model, split, values = gaussian
    guide = _guide(AutoNormal, model, split, values, init_scale=10.0)
    note = laplace_start(guide, model, split, values, max_scale=10.0)
    optimum = 5 ** -0.5
    for name in ("mu", "nu"):
        assert float(getattr(guide.scales, name).detach()) == pytest.approx(optimum, rel=1e-6)
        assert float(getattr(guide.locs, name).detach()) == pytest.approx(float(values[name]), rel=1e-12)
    assert note.startswith("Laplace start: 100% of 2 coordinates narrower than 10")
    # capped where the Laplace width is wider than the guide's init_scale
    guide = _guide(AutoNormal, model, split, values, init_scale=0.1)
    laplace_start(guide, model, split, values, max_scale=0.1)
    assert float(guide.scales.mu.detach()) == pytest.approx(0.1, rel=1e-6)


def test_the_means_move_in_units_of_their_widths_and_the_guide_stays_an_autonormal(gaussian):
    """One Adam step moves a mean by about lr * min(1, width / STEP_WIDTH) (its first step exactly, up to Adam's
    eps): here width (1 + n)^-1/2 = 0.447 > STEP_WIDTH, so plain lr; with a narrow step width 0.447 / 0.5 of it.
    ``median``, ``quantiles``, the param store's state and pickling see the means, not their units."""
    import pickle

    from pyro.infer import SVI, Trace_ELBO

    model, split, values = gaussian
    for step_width, factor in ((0.1, 1.0), (0.894427191, 0.5)):
        guide = _guide(AutoNormal, model, split, values, init_scale=10.0)
        laplace_start(guide, model, split, values, max_scale=10.0, step_width=step_width)
        before = float(guide.locs.mu.detach())
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        svi.step(*split.args, **split.kwargs)
        assert abs(float(guide.locs.mu.detach()) - before) == pytest.approx(0.01 * factor, rel=1e-4)
    median = guide.median()["mu"]
    assert float(median) == pytest.approx(float(guide.locs.mu.detach()), rel=1e-12)
    assert float(guide.quantiles([0.5])["mu"][0]) == pytest.approx(float(median), rel=1e-12)
    state = pyro.get_param_store().get_state()
    pyro.clear_param_store()
    pyro.get_param_store().set_state(pickle.loads(pickle.dumps(state)))
    restored = pickle.loads(pickle.dumps(guide))
    assert float(restored.median()["mu"]) == pytest.approx(float(median), rel=1e-12)


def test_the_low_rank_guide_gets_the_widths_on_its_diagonal_scale(gaussian):
    model, split, values = gaussian
    guide = _guide(AutoLowRankMultivariateNormal, model, split, values, init_scale=10.0, rank=1)
    laplace_start(guide, model, split, values, max_scale=10.0)
    assert guide.scale.detach().tolist() == pytest.approx([(5 ** -0.5) * 0.5 ** 0.5] * 2, rel=1e-6)
    assert guide.loc.detach().tolist() == pytest.approx([float(values["mu"])] * 2, rel=1e-12)


def test_other_guides_are_refused_and_large_latents_skipped(gaussian):
    model, split, values = gaussian
    with pytest.raises(TypeError, match="expected an AutoNormal or AutoLowRankMultivariateNormal, got AutoDelta"):
        laplace_start(_guide(AutoDelta, model, split, values), model, split, values, 0.1)
    guide = _guide(AutoNormal, model, split, values, init_scale=0.1)
    note = laplace_start(guide, model, split, values, 0.1, max_dim=1)
    assert "skipped: 2 latent coordinates" in note
    assert float(guide.scales.mu.detach()) == pytest.approx(0.1, rel=1e-6)


@pytest.mark.parametrize("runner", [run_autonormal, run_lowrank])
def test_a_laplace_started_fit_begins_closer_to_the_posterior_of_a_node(problem, runner):
    """From one MAP fit of a NODE, the Laplace-started guide's first loss (a negative ELBO estimate) is far below
    the uniformly started one's: its particles no longer land high on the walls of the data-dominated directions.
    The result notes the start; ``laplace=False`` is the uniform start.  (Seed 0: 200 against 232 for AutoNormal
    on this small, unpolished fit; the gap grows with the stiffness of the basin.)"""
    model = problem.default_model(R_hidden=(8,))
    start = run_map(model, problem.train, num_steps=300, lr=0.02, num_starts=1, progress_bar=False)
    fits = {flag: runner(model, problem.train, warm_start=start, num_steps=5, laplace=flag, seed=0,
                         progress_bar=False, elbo_particles=0) for flag in (True, False)}
    assert fits[True].losses[0] < fits[False].losses[0] - 20, (fits[True].losses[0], fits[False].losses[0])
    assert any(n.startswith("Laplace start:") for n in fits[True].notes)
    assert not any(n.startswith("Laplace start:") for n in fits[False].notes)
