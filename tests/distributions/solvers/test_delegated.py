"""The methods only ``torchdiffeq`` solves: made from one table, adaptive ones carry tolerances, fixed-grid ones
take torchdiffeq's own step, SciPy takes none."""
import pickle

import pytest
import torch

from pyro_node_uq.distributions.solvers import SOLVERS, get_solver
from pyro_node_uq.distributions.solvers.delegated import (
    _TABLE,
    Dopri5,
    Heun3,
    ScipySolver,
)


@pytest.mark.parametrize("cls_name, name, order, base, doc", _TABLE, ids=[row[1] for row in _TABLE])
def test_each_row_is_a_registered_class_with_its_capabilities(cls_name, name, order, base, doc):
    cls = SOLVERS[name]
    assert cls.__name__ == cls_name and issubclass(cls, base) and cls.order == order
    assert cls.torchdiffeq == name and cls.tableau is None and cls.__doc__.startswith(doc)
    assert cls.adaptive == (not cls.fixed_step)
    scheme = get_solver(name, rtol=1e-3, atol=1e-4)
    assert pickle.loads(pickle.dumps(scheme)) == scheme
    if cls.adaptive:
        assert (scheme.rtol, scheme.atol) == (1e-3, 1e-4)


def test_adaptive_tolerances_are_part_of_the_value():
    assert Dopri5(rtol=1e-6) == Dopri5(rtol=1e-6) != Dopri5(rtol=1e-7)
    assert hash(Dopri5(rtol=1e-6)) == hash(Dopri5(rtol=1e-6)) and repr(Dopri5()) == "Dopri5(rtol=None, atol=None)"


def test_a_fixed_grid_step_is_torchdiffeqs_and_scipy_takes_no_step():
    """Heun3 on y' = -y from 1 with h = 0.1: a third-order step, 1 - h + h^2/2 - h^3/6 up to O(h^4)."""
    y = Heun3().step(lambda t, y: -y, torch.ones(1, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64), 0.1)
    assert float(y) == pytest.approx(1 - 0.1 + 0.005 - 0.1 ** 3 / 6, abs=1e-5)
    with pytest.raises(NotImplementedError, match="ScipySolver takes no single steps"):
        ScipySolver().step(lambda t, y: -y, torch.ones(1), torch.tensor(0.0), 0.1)
    assert not ScipySolver.fixed_step and not ScipySolver.adaptive
