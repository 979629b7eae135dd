"""run_svgd on a tiny NODE; on chemical with the registered options (slow)."""
import pytest
import torch

from pyro_node_uq.compare.scoring import score_result
from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import (
    METHODS,
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


@pytest.mark.slow
def test_svgd_keeps_its_start_through_the_run():
    """Registered MAP then SVGD on ``chemical``, seeds 0-4, in float32 as the comparison runs (this reproduces its
    rows of ``benchmarks/convergence.py``).  With too large a step the particles overshoot together late in the run
    and lose the fit they started from: at ``lr=1e-2`` test NLL -1.960 -1.838 -2.219 -1.816 -2.043 (mean -1.975; at
    seeds 0 and 3 the mean squared update ends in a jump of five orders of magnitude).  Measured at the default:
    -2.139 -1.859 -2.177 -2.130 -2.029 (mean -2.067) with a MAP budget of 2000 steps; -2.231 -2.148 -2.069 -2.078
    -2.158 (mean -2.137) with the registered 5000.  The pipeline is chaotic in its rounding (in float64 the same
    seeds give other fits: mean -1.884 at the default, -1.857 at ``lr=1e-2`` with seed 4 ending in such a jump), so
    this pins one run of each seed, not a statistical margin."""
    torch.set_default_dtype(torch.float32)
    problem = load_problem("chemical")
    model = problem.default_model()
    nll = []
    for seed in range(5):
        start = METHODS["map"].runner(model, problem.train, seed=seed, progress_bar=False,
                                      **METHODS["map"].options("chemical"))
        res = run_svgd(model, problem.train, warm_start=start, seed=seed, progress_bar=False,
                       **METHODS["svgd"].options("chemical"))
        pred = {"test": res.predict(problem.test, num_samples=100, seed=seed)}
        nll.append(score_result(res, problem, pred, hidden=False)["test_nll"])
    print("svgd chemical test NLL", nll)
    assert sum(nll) / 5 < -2.03
