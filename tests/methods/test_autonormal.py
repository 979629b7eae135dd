"""run_autonormal: counted evaluations, warm start cost, isolated parameters."""
import torch

from pyro_node_uq.methods import run_autonormal, run_lowrank


def test_autonormal_counts_and_isolated_params(problem, small):
    model, map_res = small
    a = run_autonormal(model, problem.train, num_steps=10, num_particles=4, warm_start=map_res, progress_bar=False)
    # the MAP's, the guide's set-up trace, the Laplace start's (one trace, 2 perturbed points per coordinate), SVI's
    assert a.num_model_evals == map_res.num_model_evals + 1 + (1 + 2 * 35) + 10 * 4
    plain = run_autonormal(model, problem.train, num_steps=10, num_particles=4, warm_start=map_res, laplace=False,
                           progress_bar=False, elbo_particles=0)
    assert plain.num_model_evals == map_res.num_model_evals + 1 + 10 * 4
    assert a.stochastic_dim == 35 and a.elbo is not None and a.elbo == a.elbo
    draws = a.posterior_samples(6, seed=3)
    assert draws["R.0.weight"].shape == (6, 4, 4)
    before = a.predict(problem.test, num_samples=4, seed=1)["y_mean"]
    run_lowrank(model, problem.train, num_steps=3, rank=2, warm_start=map_res, progress_bar=False)
    run_autonormal(model, problem.train, num_steps=3, warm_start=map_res, init_scale=0.5, progress_bar=False)
    after = a.predict(problem.test, num_samples=4, seed=1)["y_mean"]
    assert torch.equal(before, after)  # later fits do not leak into this result's parameters


def test_fixed_params_keep_the_start_noise_scale(problem):
    """``fixed_params=("sigma",)``: the learned noise scale stays at the MAP start's (exactly) while the guide
    trains; without it the ELBO moves it; a name the model does not have is refused by name."""
    import pytest

    from pyro_node_uq.methods import run_map
    from pyro_node_uq.methods.common import map_values

    model = problem.default_model(R_hidden=(4,), scale="learned")
    start = run_map(model, problem.train, num_steps=30, lr=0.05, num_starts=1, stop_rtol=0, progress_bar=False)
    options = {"num_steps": 40, "num_particles": 4, "warm_start": start, "progress_bar": False, "stop_rtol": 0}
    fixed = run_autonormal(model, problem.train, fixed_params=("sigma",), **options)
    learned = run_autonormal(model, problem.train, **options)
    sigma = model.noise_scale(start.param_state)
    assert torch.equal(model.noise_scale(fixed.param_state), sigma)
    assert not torch.allclose(model.noise_scale(learned.param_state), sigma, rtol=1e-3)
    loc = fixed.param_state["params"]["AutoNormal.locs.R.0.weight"]
    assert not torch.allclose(loc, map_values(start)["R.0.weight"], rtol=1e-4)  # the guide did train
    with pytest.raises(ValueError, match=r"fixed_params: \['omega'\] are not pyro.param s of the model"):
        run_autonormal(model, problem.train, fixed_params=("omega",), **options)
