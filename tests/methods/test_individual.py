"""Individual predictions: the importance-sampled effects of a new unit given its first observations."""
import pyro
import pytest
import torch

from pyro_node_uq.data import load_problem, split_by_time
from pyro_node_uq.data.pk import K_ELIM
from pyro_node_uq.diagnostics.metrics import score
from pyro_node_uq.methods import MethodResult, condition_effects, predict_units
from pyro_node_uq.models import HierarchicalNODEModel

D64 = torch.float64


@pytest.fixture(scope="module")
def truth():
    """The true population (linear R = -k h, the true omega and noise) as a posterior of point masses."""
    problem = load_problem("pk_repeated", num_units=24, noise=0.05, dtype=D64)
    model = HierarchicalNODEModel(hidden_dim=1, R_hidden=(), Z_hidden=None, omega="latent", scale=0.05,
                                  solver={"method": "rk4", "substeps": 4})
    S = 50
    samples = {"R.0.weight": torch.full((1, S, 1, 1), -K_ELIM, dtype=D64), "R.0.bias": torch.zeros(1, S, 1, dtype=D64),
               "omega": torch.tensor([0.3, 0.2], dtype=D64).expand(1, S, 2)}
    return problem, MethodResult("truth", model, samples=samples)


def test_conditioning_recovers_the_units_effects(truth):
    problem, result = truth
    early, _late = split_by_time(problem.test, 2 / 3)  # 4-6 observations per unit
    eff = condition_effects(result, early, num_samples=50, num_proposals=400, seed=1)
    assert eff.eta_z.shape == (50, len(early), 2) and eff.ess.shape == (50, len(early))
    assert bool((eff.ess >= 1).all()) and bool((eff.ess <= 400).all())
    eta = eff.eta_z * torch.tensor([0.3, 0.2], dtype=D64)
    prior_err = problem.test.eta_true.abs().mean()
    post_err = (eta.mean(0) - problem.test.eta_true).abs().mean()
    assert post_err < 0.5 * prior_err, (post_err, prior_err)  # the early data pin the effects down


def test_conditioned_forecast_beats_the_population_forecast(truth):
    problem, result = truth
    early, late = split_by_time(problem.test, 1 / 3)
    pop = predict_units(result, late, num_samples=50, seed=0)
    ind = predict_units(result, late, condition_effects(result, early, num_samples=50, num_proposals=400, seed=0))
    nll = lambda p: score(p, late.y, late.mask, noise_scale=0.05)["nll"]
    assert nll(ind) < nll(pop) - 1.0
    assert pop["y_mean"].shape == ind["y_mean"].shape == (50, len(late), len(late.t), 1)


def test_population_only_model_cannot_be_conditioned(truth):
    problem, result = truth
    pop_model = HierarchicalNODEModel(hidden_dim=1, R_hidden=(), Z_hidden=None, effects=())
    with pytest.raises(ValueError, match="no random effects"):
        condition_effects(MethodResult("x", pop_model, samples=result.samples), problem.test)
    pyro.clear_param_store()
