"""run_langevin_kernel: particles as chains, cost includes the warm start, a working acceptance statistic."""
import pytest

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_autonormal, run_langevin_kernel


def test_kernel_ensemble_from_autonormal():
    problem = load_problem("chemical", num_train=2, num_times=11)
    model = problem.default_model(R_hidden=(4,))
    fit = run_autonormal(model, problem.train, num_steps=20, map_steps=20, num_particles=2, progress_bar=False,
                         elbo_particles=0)
    res = run_langevin_kernel(model, problem.train, warm_start=fit, num_particles=4, num_samples=6, warmup_steps=10,
                              thin=2,
                              progress_bar=False)
    assert res.samples["R.0.weight"].shape[:2] == (4, 3)
    assert res.num_model_evals > fit.num_model_evals and res.wall_time > fit.wall_time
    assert res.sample_stats["acceptance_rate"].shape == res.sample_stats["diverging"].shape == (4, 3)  # per particle
    accept = float(res.sample_stats["acceptance_rate"].mean())
    assert 0.0 < accept <= 1.0  # not the zero a reset kernel would report
    draws = res.samples["R.0.bias"]
    assert (draws[:, 1:] != draws[:, :1]).any()  # the chains move
    with pytest.raises(ValueError, match="num_particles"):
        run_langevin_kernel(model, problem.train, warm_start=fit, num_particles=1)
