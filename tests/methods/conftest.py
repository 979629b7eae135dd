"""Shared fixtures of the method tests: a tiny chemical problem and a MAP fit of a 35-weight NODE."""
import pytest

from pyro_node_uq.data import load_problem
from pyro_node_uq.methods import run_map


@pytest.fixture(scope="module")
def problem():
    return load_problem("chemical", num_train=3, num_test=2, num_times=11)


@pytest.fixture(scope="module")
def small(problem):
    model = problem.default_model(R_hidden=(4,))  # 35 weights
    return model, run_map(model, problem.train, num_steps=40, lr=0.05, num_starts=1, stop_rtol=0, progress_bar=False)
