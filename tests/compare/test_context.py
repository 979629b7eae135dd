"""RunContext: the cache of shared fits."""
from pyro_node_uq.data import load_problem

TINY = {"num_train": 3, "num_test": 2, "num_extrapolation": 2, "num_times": 11}
FAST = {"map": {"num_steps": 5}, "autonormal": {"num_steps": 3, "num_particles": 2, "elbo_particles": 4}}


def test_shared_fits_do_not_depend_on_the_order_methods_run_in():
    """A method that starts from another gets that method's one cached fit, whether it ran before or not."""
    from pyro_node_uq.compare import RunContext

    opts = {"map": {"num_steps": 3}, "autonormal": {"num_steps": 2, "elbo_particles": 0},
            "langevin_kernel": {"num_particles": 2, "num_samples": 2, "warmup_steps": 1}}
    ctx = RunContext(load_problem("chemical", **TINY), progress_bar=False, options=opts)
    kernel = ctx.fit("langevin_kernel")  # needs autonormal, which needs map: both fitted on demand
    assert ctx.fit("autonormal") is ctx.fit("autonormal") and ctx._fits.keys() == {"map", "autonormal",
                                                                                     "langevin_kernel"}
    assert kernel.num_model_evals > ctx.fit("autonormal").num_model_evals > ctx.fit("map").num_model_evals
