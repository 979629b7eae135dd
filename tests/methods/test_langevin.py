"""run_langevin: results convert to ArviZ, hybrid predictions condition on the training data only."""
import torch

MODES = ["learned", "exact", "hybrid"]


def test_run_langevin_result_converts_to_inference_data():
    import arviz as az

    from pyro_node_uq.data import load_problem
    from pyro_node_uq.diagnostics import to_inference_data
    from pyro_node_uq.methods import run_langevin

    problem = load_problem("chemical", num_train=3, num_test=2, num_times=11)
    model = problem.default_model(R_hidden=(4,))
    res = run_langevin(model, problem.train, score="learned", num_steps=3, num_iters=3, map_steps=3,
                       autonormal_steps=3, progress_bar=False, elbo_particles=8)
    assert res.name == "langevin_learned" and res.stochastic_dim == 35 and res.elbo is not None
    assert res.num_model_evals > 0
    idata = to_inference_data(res, problem.test, num_samples=40, num_chains=4)
    assert idata.posterior.sizes["chain"] == 4 and idata.posterior.sizes["draw"] == 10
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert len(az.summary(idata, var_names=["R.0.bias"])) == 4


def test_hybrid_predictions_condition_on_the_training_data_only():
    """The exact drift of a fitted hybrid guide uses the data it was fitted on, never the predicted split's ``y``."""
    from dataclasses import replace

    from pyro_node_uq.data import load_problem
    from pyro_node_uq.methods import run_langevin

    problem = load_problem("chemical", num_train=3, num_test=2, num_times=11)
    model = problem.default_model(R_hidden=(4,))
    res = run_langevin(model, problem.train, score="hybrid", num_steps=3, num_iters=3, map_steps=3,
                       autonormal_steps=3, progress_bar=False, elbo_particles=0)
    assert res.train_split is problem.train
    test = problem.test
    shifted = replace(test, y=test.y + 5.0)  # data the posterior must not see
    a = res.predict(test, num_samples=6)["y_mean"]
    b = res.predict(shifted, num_samples=6)["y_mean"]
    assert torch.equal(a, b)
    # the guide owns its data: calling it on the test split's arguments does not change what it conditions on
    on_train = res.posterior_samples(6)
    on_test = res.posterior_samples(6, split=test)
    assert all(torch.equal(on_train[k], on_test[k]) for k in on_train)
    # ... while conditioning it explicitly on other data does change the draws
    res.guide.condition_on(*test.args, **test.kwargs)
    assert not all(torch.equal(on_train[k], v) for k, v in res.posterior_samples(6).items())
