"""Slow checks of AutoLangevin on ``chemical`` and ``elastoplastic`` (16 train / 16 test trajectories each).

The learned-score guide (K = 10), started at the AutoNormal fit, must raise AutoNormal's path ELBO at every seed and,
on chemical, beat AutoNormal's test NLL and keep 90% coverage near nominal (means over seeds).  Settings per problem: chemical at the comparison job's step counts (MAP 800,
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

On elastoplastic the NLL and coverage claims do not hold over seeds, so only the path ELBO is asserted there.
Measured (float64, one thread, the solve of issue 18), seeds 0-4, AutoNormal -> AutoLangevin test NLL: -1.394 ->
-1.486, -1.128 -> -0.961, -0.776 -> -0.536, -1.348 -> -1.344, -1.188 -> -1.072 (AutoLangevin better at seed 0 only;
means -1.167 and -1.080); AutoLangevin 90% coverage 0.884, 0.757, 0.692, 0.831, 0.775 (mean 0.788); path ELBO
-1968 -> -440, -4730 -> -2451, -7343 -> -3965, -4069 -> -891, -3350 -> -1286.  The one-seed test (seed 0) passed
by luck.  The spread of AutoNormal's ELBO over seeds (-1968 to -7343) says the 3000-step MAP itself lands in
fits of different quality, and the learned score at this budget (180 iterations) follows a poor start; the
AutoLangevin issue's under-coverage on this problem is therefore not fixed by the longer MAP alone.
"""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import score
from pyro_node_uq.methods import run_autonormal, run_langevin, run_map

pytestmark = pytest.mark.slow

SETTINGS = {
    "chemical": {"map_steps": 800, "map_lr": 2e-2, "vi_steps": 500, "iters": 300, "seeds": range(5), "coverage": (0.80, 0.95)},
    # NLL and coverage do not hold over seeds here (module docstring): the path ELBO only
    "elastoplastic": {"map_steps": 3000, "map_lr": 5e-3, "vi_steps": 300, "iters": 180, "seeds": range(5), "coverage": None},
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

    if cfg["coverage"] is None:
        return
    assert mean(1, "nll") < mean(0, "nll")
    low, high = cfg["coverage"]
    assert low <= mean(1, "coverage_90") <= high
