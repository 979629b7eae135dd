"""Slow checks of AutoLangevin on ``chemical`` and ``elastoplastic`` (16 train / 16 test trajectories each).

The learned-score guide (K = 10), started at the AutoNormal fit, must raise AutoNormal's path ELBO at every seed, keep
AutoNormal's test NLL (means over seeds, to ``NLL_SLACK``) and keep 90% coverage near nominal.  Settings per problem:
chemical at the comparison job's step counts (MAP 800, AutoNormal 500, AutoLangevin 300); elastoplastic at 0.6x those
for VI and AutoLangevin (as in the comparison job) but with a MAP of 3000 steps at lr 5e-3 (after the comparison
job's 480 steps the NODE's training RMSE against the noise-free truth is 0.049, well above the noise std 0.03, and
every posterior that follows the misspecified likelihood is over-confident).  Each MAP ends with an L-BFGS polish.

One seed's outcome is not the method's: the whole pipeline (MAP, AutoNormal, AutoLangevin) is chaotic in its
rounding, so the checks hold over the mean of seeds 0-4 (one pipeline each).

AutoNormal starts at the Laplace widths of the MAP fit (``run_autonormal(laplace=True)``), which makes it a far
better baseline than the uniform start it replaced: measured (float64, one thread), seeds 0-4, AutoNormal ->
AutoLangevin test NLL on chemical -2.325 -> -2.326, -2.346 -> -2.343, -2.174 -> -2.145, -2.380 -> -2.374,
-2.312 -> -2.307 (means -2.307 and -2.299; from the uniform std-5e-3 start they were -2.201 and -2.249), coverage
0.853, 0.861, 0.830, 0.858, 0.854; path ELBO +83 to +110 nats at every seed.  Elastoplastic -1.997 -> -1.997,
-1.938 -> -1.935, -1.990 -> -1.990, -1.938 -> -1.932, -1.882 -> -1.876 (means -1.949 and -1.946; from the uniform
start -1.648 and -1.699), coverage 0.883, 0.858, 0.871, 0.863, 0.848; path ELBO +78 to +104 nats.  So against the
Laplace-started AutoNormal the learned score raises the bound and tightens the ensemble a little (coverage 0.01-0.03
lower) without improving the held-out NLL: the check is that it keeps it.
"""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import score
from pyro_node_uq.methods import run_autonormal, run_langevin, run_map

pytestmark = pytest.mark.slow

#: how far AutoLangevin's mean test NLL may sit above AutoNormal's (measured: 0.008 on chemical, 0.003 on elastoplastic)
NLL_SLACK = 0.02

SETTINGS = {
    "chemical": {"map_steps": 800, "map_lr": 2e-2, "vi_steps": 500, "iters": 300, "seeds": range(5), "coverage": (0.80, 0.95)},
    "elastoplastic": {"map_steps": 3000, "map_lr": 5e-3, "vi_steps": 300, "iters": 180, "seeds": range(5),
                      "coverage": (0.80, 0.95)},
}


def _fit_and_score(problem, cfg, seed):
    """MAP, AutoNormal from it, AutoLangevin from that; the path ELBOs and test scores of the last two (the noise
    fixed at its true value, the configuration measured above; elastoplastic's default model learns it)."""
    model = problem.default_model(scale=problem.noise_scale)
    mp = run_map(model, problem.train, num_steps=cfg["map_steps"], lr=cfg["map_lr"], seed=seed, progress_bar=False)
    an = run_autonormal(model, problem.train, num_steps=cfg["vi_steps"], warm_start=mp, seed=seed,
                        progress_bar=False)
    lv = run_langevin(model, problem.train, score="learned", num_iters=cfg["iters"], warm_start=an, seed=seed,
                      progress_bar=False)
    out = {}
    for res in (an, lv):
        torch.manual_seed(0)
        pred = res.predict(problem.test, num_samples=200)
        out[res.name] = dict(score(pred, problem.test.y, noise_scale=problem.noise_scale), elbo=res.elbo)
    return out["autonormal"], out["langevin_learned"]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_learned_autolangevin_raises_the_bound_and_keeps_autonormals_scores(name):
    cfg = SETTINGS[name]
    problem = load_problem(name)
    runs = [_fit_and_score(problem, cfg, seed) for seed in cfg["seeds"]]
    for seed, (an, lv) in zip(cfg["seeds"], runs):
        print(name, f"seed {seed}: elbo {an['elbo']:.1f} -> {lv['elbo']:.1f}, nll {an['nll']:.4f} -> "
              f"{lv['nll']:.4f}, coverage_90 {an['coverage_90']:.3f} -> {lv['coverage_90']:.3f}")
        assert lv["elbo"] > an["elbo"], seed  # a lower bound, started at AutoNormal's: training only raises it

    def mean(method, key):
        return sum(run[method][key] for run in runs) / len(runs)

    assert mean(1, "nll") < mean(0, "nll") + NLL_SLACK
    low, high = cfg["coverage"]
    assert low <= mean(1, "coverage_90") <= high
