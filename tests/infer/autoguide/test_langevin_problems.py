"""Slow check of AutoLangevin on ``chemical`` at the comparison job's settings (16 train / 16 test trajectories).

The learned-score guide (K = 10, 300 iterations), started at the AutoNormal fit, must beat AutoNormal's test NLL
and keep 90% coverage within [0.85, 0.95].  Measured here (float64, seed 0): AutoNormal NLL -1.741, coverage 0.951;
AutoLangevin learned -1.936, 0.878 (70 s); benchmarks/langevin_quality.py (float32): -1.909 / 0.920 and
-2.063 / 0.874.  The same check fails on ``elastoplastic`` (NLL -1.252
against -1.257, coverage 0.819): see the AutoLangevin issue's note; it is not asserted here.
"""
import pytest
import torch

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import score
from pyro_node_uq.infer import run_autonormal, run_langevin, run_map

pytestmark = pytest.mark.slow


def test_learned_autolangevin_beats_autonormal_on_chemical():
    problem = load_problem("chemical")
    model = problem.default_model()
    mp = run_map(model, problem.train, num_steps=800, progress_bar=False)
    an = run_autonormal(model, problem.train, num_steps=500, map_result=mp, progress_bar=False)
    lv = run_langevin(model, problem.train, score="learned", num_iters=300, autonormal_result=an, progress_bar=False)
    out = {}
    for res in (an, lv):
        torch.manual_seed(0)
        pred = res.predict(problem.test, num_samples=200)
        out[res.name] = score(pred, problem.test.y, noise_scale=problem.noise_scale)
        print(res.name, {k: round(out[res.name][k], 4) for k in ("nll", "crps", "coverage_90")})
    assert lv.elbo > an.elbo
    assert out["langevin_learned"]["nll"] < out["autonormal"]["nll"]
    assert 0.85 <= out["langevin_learned"]["coverage_90"] <= 0.95
