"""The elastoplastic problem: the return mapping that simulates it, and its recommended model's noise scale."""
import pytest
import torch

from pyro_node_uq.compare.scoring import score_result
from pyro_node_uq.data import load_problem, return_mapping
from pyro_node_uq.methods import METHODS


def test_elastoplastic_return_mapping():
    eps = torch.cat([torch.linspace(0, 3, 301), torch.linspace(3, -3, 601)[1:]])[None].double()
    sigma, ep, al, p = return_mapping(eps)
    xi = sigma - al
    assert (xi.abs() <= 1.0 + 0.1 * p + 1e-9).all()  # never outside the yield surface
    assert sigma[0, 50] == pytest.approx(0.5)  # elastic branch
    assert torch.all(p[:, 1:] >= p[:, :-1])  # accumulated plastic strain never decreases
    assert torch.allclose(al, 0.2 * ep)  # linear kinematic hardening


def test_default_model_learns_the_noise_scale_from_the_true_one():
    problem = load_problem("elastoplastic", num_train=2, num_test=2, num_extrapolation=2, num_times=11)
    model = problem.default_model()
    assert model.scale == "learned" and model.scale_init == problem.noise_scale == 0.03
    assert problem.default_model(scale=problem.noise_scale).scale == 0.03  # the fixed-noise model on request


@pytest.mark.slow
def test_default_model_bands_cover_with_the_registered_fits():
    """The registered MAP, layer-wise (last layer) and AutoNormal fits of the default model, seeds 0-2: the means
    of their 90% coverage and test NLL.  The NODE's misfit is well above the noise std 0.03: with the noise fixed
    there, the last layer's converged posterior is narrow (``benchmarks/convergence.py``: coverage 0.67-0.70, NLL
    -1.06 to -0.95).  With the noise learned, a Gaussian guide that has not yet shed its initial spread inflates the
    noise (AutoNormal at the cost-scaled budget of 300 steps: coverage 0.97-0.99, NLL -1.16 to -1.06; from the
    polished MAP at std 0.02: coverage 0.96-0.99, mean 0.977, which failed here).  Measured (polished MAP,
    AutoNormal from std 5e-3): layer-wise NLL -1.78 to -1.60, coverage 0.92-0.95; AutoNormal NLL -1.71 to -1.64,
    coverage 0.92-0.93."""
    problem = load_problem("elastoplastic")
    model = problem.default_model()

    def fit(name, seed, start=None):
        return METHODS[name].runner(model, problem.train, warm_start=start, seed=seed, progress_bar=False,
                                    **METHODS[name].options(problem.name))

    scores = {"layerwise_last": [], "autonormal": []}
    for seed in range(3):
        start = fit("map", seed)
        for name, rows in scores.items():
            res = fit(name, seed, start)
            pred = {"test": res.predict(problem.test, num_samples=100, seed=seed)}
            row = score_result(res, problem, pred, hidden=False)
            rows.append((row["test_nll"], row["test_coverage_90"]))
    print(scores)
    for name, rows in scores.items():
        nll, cov = (sum(v) / len(rows) for v in zip(*rows))
        assert 0.8 <= cov <= 0.97 and nll < -1.25, (name, rows)
