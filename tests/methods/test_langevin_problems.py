"""Slow checks of AutoLangevin on ``chemical`` and ``elastoplastic`` (16 train / 16 test trajectories each).

The learned-score guide (K = 10), started at the AutoNormal fit, must beat AutoNormal's test NLL and keep 90%
coverage within [0.85, 0.95].  Settings per problem: chemical at the comparison job's step counts (MAP 800,
AutoNormal 500, AutoLangevin 300); elastoplastic at 0.6x those for VI and AutoLangevin (as in the comparison job) but
with a MAP of 3000 steps at lr 5e-3.  Elastoplastic needs the longer MAP: after the comparison job's 480 steps the
NODE's training RMSE against the noise-free truth is 0.049, well above the noise std 0.03, so the likelihood (noise
fixed at its true value) is misspecified for the fitted model, every posterior that follows it is over-confident,
and AutoLangevin (90% coverage 0.76-0.84) under-covered there.  Measured numbers: see the AutoLangevin issue's note
and benchmarks/langevin_quality.py.
"""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import score
from pyro_node_uq.methods import run_autonormal, run_langevin, run_map

pytestmark = pytest.mark.slow

SETTINGS = {
    "chemical": dict(map_steps=800, map_lr=2e-2, vi_steps=500, iters=300),
    "elastoplastic": dict(map_steps=3000, map_lr=5e-3, vi_steps=300, iters=180),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_learned_autolangevin_beats_autonormal(name):
    cfg = SETTINGS[name]
    problem = load_problem(name)
    model = problem.default_model()
    mp = run_map(model, problem.train, num_steps=cfg["map_steps"], lr=cfg["map_lr"], progress_bar=False)
    an = run_autonormal(model, problem.train, num_steps=cfg["vi_steps"], warm_start=mp, progress_bar=False)
    lv = run_langevin(model, problem.train, score="learned", num_iters=cfg["iters"], warm_start=an,
                      progress_bar=False)
    out = {}
    for res in (an, lv):
        torch.manual_seed(0)
        pred = res.predict(problem.test, num_samples=200)
        out[res.name] = score(pred, problem.test.y, noise_scale=problem.noise_scale)
        print(name, res.name, f"elbo {res.elbo:.1f}", {k: round(out[res.name][k], 4) for k in ("nll", "crps", "coverage_90")})
    assert lv.elbo > an.elbo
    assert out["langevin_learned"]["nll"] < out["autonormal"]["nll"]
    assert 0.85 <= out["langevin_learned"]["coverage_90"] <= 0.95
