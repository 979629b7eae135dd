"""run_lowrank on a tiny NODE."""
from pyro_node_uq.methods import run_lowrank


def test_lowrank(problem, small):
    model, map_res = small
    res = run_lowrank(model, problem.train, num_steps=5, rank=3, warm_start=map_res, progress_bar=False)
    assert res.name == "lowrank" and res.stochastic_dim == 35
    assert res.predict(problem.test, num_samples=3)["obs"].shape == (3, 2, 11, 2)
