"""run_autonormal: counted evaluations, warm start cost, isolated parameters."""
import torch

from pyro_node_uq.methods import run_autonormal, run_lowrank


def test_autonormal_counts_and_isolated_params(problem, small):
    model, map_res = small
    a = run_autonormal(model, problem.train, num_steps=10, num_particles=4, warm_start=map_res, progress_bar=False)
    assert a.num_model_evals == map_res.num_model_evals + 1 + 10 * 4
    assert a.stochastic_dim == 35 and a.elbo is not None and a.elbo == a.elbo
    draws = a.posterior_samples(6, seed=3)
    assert draws["R.0.weight"].shape == (6, 4, 4)
    before = a.predict(problem.test, num_samples=4, seed=1)["y_mean"]
    run_lowrank(model, problem.train, num_steps=3, rank=2, warm_start=map_res, progress_bar=False)
    run_autonormal(model, problem.train, num_steps=3, warm_start=map_res, init_scale=0.5, progress_bar=False)
    after = a.predict(problem.test, num_samples=4, seed=1)["y_mean"]
    assert torch.equal(before, after)  # later fits do not leak into this result's parameters
