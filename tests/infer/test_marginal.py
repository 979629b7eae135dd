"""The marginal likelihood of the population parameters against quadrature over one random effect."""
import math

import pyro
import pytest
import torch
from pyro import poutine

from pyro_node_uq.data import load_problem
from pyro_node_uq.infer.marginal import (
    marginal_log_likelihood,
    maximize_marginal_likelihood,
)
from pyro_node_uq.models import GreyBoxNODEModel

D64 = torch.float64


def _setup():
    units = load_problem("pk_repeated", num_units=4, num_obs=4, dtype=D64).train
    model = GreyBoxNODEModel("one_compartment_iv", random_effects=("CL",), parameterization="centred")
    values = {"CL_pop": torch.tensor(0.12, dtype=D64), "V_pop": torch.tensor(0.9, dtype=D64),
              "omega": torch.tensor([0.4], dtype=D64), "sigma": torch.tensor([0.1], dtype=D64)}
    return units, model, values


def _quadrature(model, units, values, num=4001):
    """Per unit, log of the integral over eta on a grid of +-8 omega (trapezoid rule)."""
    omega = float(values["omega"])
    grid = torch.linspace(-8 * omega, 8 * omega, num, dtype=D64)
    eta = grid[:, None, None].expand(num, len(units), 1)
    with poutine.block(), pyro.plate("_grid", num, dim=-2):
        tr = poutine.trace(poutine.condition(model, {**values, "eta": eta})).get_trace(
            units.t, units.x, units.y, mask=units.mask, doses=units.doses)
    log_joint = tr.nodes["obs"]["fn"].log_prob(units.y) + tr.nodes["eta"]["fn"].log_prob(eta)  # (G, N)
    step = float(grid[1] - grid[0])
    w = torch.full((num, 1), step, dtype=D64)
    w[0] = w[-1] = step / 2
    return torch.logsumexp(log_joint + w.log(), 0)


def test_importance_sampling_matches_quadrature():
    units, model, values = _setup()
    exact = _quadrature(model, units, values)
    estimate = marginal_log_likelihood(model, units, values, num_samples=4000, per_unit=True)
    assert torch.allclose(estimate, exact, atol=0.02), (estimate, exact)
    assert math.isfinite(float(exact.sum())) and float(exact.sum()) != 0.0


def test_the_maximiser_improves_the_likelihood_and_needs_effects():
    units, model, values = _setup()
    start = float(marginal_log_likelihood(model, units, values, num_samples=500, seed=1))
    _, best = maximize_marginal_likelihood(model, units, values, num_steps=30, num_samples=300)
    assert best > start
    with pytest.raises(ValueError, match="random effects"):
        marginal_log_likelihood(GreyBoxNODEModel("one_compartment_iv", random_effects=()), units, values)
