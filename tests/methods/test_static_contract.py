"""The method contract on a static problem (an SDE-BNN on independent (x, y) pairs), over every registered method:
a method either fits it (a MethodResult named after it, counted cost, predictions with the model's predict sites,
an InferenceData when it has a posterior) or says why it does not apply; every method applies to one of the two
kinds of model (NODE: tests/methods/test_contract.py)."""
import math

import pytest
import torch

from pyro_node_uq.compare import RunContext
from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import to_inference_data
from pyro_node_uq.methods import METHODS, MethodResult, MethodSkipped

from .test_contract import tiny_options


@pytest.fixture(scope="module")
def ctx():
    problem = load_problem("spirals", num_train=6, num_test=4, num_extrapolation=4)
    return RunContext(problem, progress_bar=False, options={name: tiny_options(m) for name, m in METHODS.items()})


@pytest.mark.parametrize("name", list(METHODS))
def test_static_method_contract(ctx, name):
    try:
        result = ctx.fit(name)
    except MethodSkipped as e:  # a generic method: the SDE-BNN's latents have no density it could use
        assert "only its own guide applies" in str(e), e
        return
    assert isinstance(result, MethodResult) and result.name == name and result.model is not ctx.model
    assert result.wall_time > 0 and result.num_model_evals > 0 and result.stochastic_dim >= 0
    pred = result.predict(ctx.problem.test, num_samples=4)
    assert set(pred) == set(ctx.model.predict_sites) and pred["probs"].shape == (4, 4, 3)
    assert bool(torch.isfinite(pred["probs"]).all()) and pred["obs"].shape == (4, 4)
    if result.stochastic_dim:
        idata = to_inference_data(result, ctx.problem.test, num_samples=4, num_chains=2)
        assert math.isfinite(float(idata.log_likelihood["obs"].sum()))

