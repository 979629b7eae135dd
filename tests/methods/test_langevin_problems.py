"""Slow checks of AutoLangevin on ``chemical`` and ``elastoplastic`` (16 train / 16 test trajectories each).

The learned-score guide (K = 10), started at the AutoNormal fit, must raise AutoNormal's path ELBO at every seed and,
on both problems, beat AutoNormal's test NLL and keep 90% coverage near nominal (means over seeds).  Settings per problem: chemical at the comparison job's step counts (MAP 800,
AutoNormal 500, AutoLangevin 300); elastoplastic at 0.6x those for VI and AutoLangevin (as in the comparison job) but
with a MAP of 3000 steps at lr 5e-3.  Elastoplastic needs the longer MAP: after the comparison job's 480 steps the
NODE's training RMSE against the noise-free truth is 0.049, well above the noise std 0.03, so the likelihood (noise
fixed at its true value) is misspecified for the fitted model, every posterior that follows it is over-confident,
and AutoLangevin (90% coverage 0.76-0.84) under-covered there.  Measured numbers: see the AutoLangevin issue's note
and benchmarks/langevin_quality.py.

One seed's outcome is not the method's: the whole pipeline (MAP, AutoNormal, AutoLangevin) is chaotic in its
rounding, so a solver that agrees with another to 1e-15 per solve (the hand-written fixed-grid solve against
torchdiffeq, float64) ends in a different fit, e.g. AutoNormal path ELBO -3355 against -2644 and AutoLangevin NLL
-2.045 against -2.000 at seed 0.  On chemical the checks therefore hold over the mean of seeds 0-4 (one pipeline
each).  Measured (float64, one thread), seeds 0-7, AutoLangevin minus AutoNormal test NLL: +0.029, -0.204, -0.177,
+0.015, -0.110, -0.083, +0.003, -0.132 (mean -0.083, sd 0.090: AutoLangevin wins on average, not every seed);
AutoLangevin 90% coverage 0.819, 0.878, 0.889, 0.830, 0.822, 0.824, 0.853, 0.899 (mean 0.852, sd 0.031: slightly
under nominal at this budget, so the band's lower end is 0.80, over three standard errors of a 5-seed mean below
it; the NLL difference's 5-seed mean sits about two standard errors below zero); the path ELBO beats AutoNormal's
by 1850-3240 nats at every seed.

On elastoplastic, before the MAP fits ended with an L-BFGS polish (:func:`~pyro_node_uq.infer.polish_lbfgs`), the
NLL and coverage claims did not hold over seeds (AutoLangevin better at seed 0 only, mean coverage 0.788), so only
the path ELBO was asserted there.  With the polish (750 L-BFGS iterations after the 3000 Adam steps) they hold and
are asserted like chemical's.  Measured (float64, one thread, AutoNormal starting at std 5e-3), seeds 0-4,
AutoNormal -> AutoLangevin test NLL: -1.774 -> -1.793, -1.670 -> -1.700, -1.656 -> -1.781, -1.485 -> -1.547,
-1.658 -> -1.675 (means -1.648 and -1.699: better at every seed); AutoLangevin 90% coverage 0.869, 0.842, 0.864,
0.809, 0.824 (mean 0.842); path ELBO -268 -> 411, -343 -> 496, -324 -> 622, -1100 -> 121, -422 -> 598.  Chemical
(200 L-BFGS iterations after 800 steps): -2.190 -> -2.266, -2.257 -> -2.297, -2.231 -> -2.188, -2.193 -> -2.379,
-2.135 -> -2.116 (means -2.201 and -2.249); coverage 0.848, 0.853, 0.831, 0.882, 0.824 (mean 0.848).  With
AutoNormal at its former std 0.02 the AutoNormal means were -1.884 (chemical) and -1.141 (elastoplastic), and
AutoLangevin's -2.168 and -1.459: the narrower start improves both.
"""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import score
from pyro_node_uq.methods import run_autonormal, run_langevin, run_map

pytestmark = pytest.mark.slow

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
def test_learned_autolangevin_beats_autonormal(name):
    cfg = SETTINGS[name]
    problem = load_problem(name)
    runs = [_fit_and_score(problem, cfg, seed) for seed in cfg["seeds"]]
    for seed, (an, lv) in zip(cfg["seeds"], runs):
        print(name, f"seed {seed}: elbo {an['elbo']:.1f} -> {lv['elbo']:.1f}, nll {an['nll']:.4f} -> "
              f"{lv['nll']:.4f}, coverage_90 {an['coverage_90']:.3f} -> {lv['coverage_90']:.3f}")
        assert lv["elbo"] > an["elbo"], seed  # a lower bound, started at AutoNormal's: training only raises it

    def mean(method, key):
        return sum(run[method][key] for run in runs) / len(runs)

    assert mean(1, "nll") < mean(0, "nll")
    low, high = cfg["coverage"]
    assert low <= mean(1, "coverage_90") <= high
