"""run_svgd on a tiny NODE."""
import pytest

from pyro_node_uq.methods import (
    run_svgd,
)


def test_svgd_node(problem, small):
    model, map_res = small
    res = run_svgd(model, problem.train, num_particles=8, num_steps=3, num_groups=2, warm_start=map_res,
                   progress_bar=False)
    assert res.samples["R.1.weight"].shape == (2, 4, 3, 4)
    assert res.num_model_evals >= map_res.num_model_evals + 3 * 8
    assert res.predict(problem.test, num_samples=None)["y_mean"].shape == (8, 2, 11, 2)
    with pytest.raises(ValueError, match="divisible"):
        run_svgd(model, problem.train, num_particles=6, num_groups=4, warm_start=map_res, progress_bar=False)
