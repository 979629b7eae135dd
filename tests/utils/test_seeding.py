"""param_scope: a fitted method's own param store, swapped in and always swapped back."""
import pyro
import pytest
import torch

from pyro_node_uq.utils.seeding import param_scope


def _store():
    return {k: float(v.detach()) for k, v in pyro.get_param_store().items()}


def test_the_scope_shows_only_the_given_state_and_restores_the_global_store():
    pyro.param("a", torch.tensor(1.0))
    saved = pyro.get_param_store().get_state()
    pyro.param("b", torch.tensor(2.0))
    with param_scope(saved):
        assert _store() == {"a": 1.0}
        pyro.param("c", torch.tensor(3.0))  # a param made inside stays inside
    assert _store() == {"a": 1.0, "b": 2.0}


def test_the_global_store_is_restored_after_an_error():
    pyro.param("a", torch.tensor(1.0))
    other = {"params": {"z": torch.tensor(5.0)}, "constraints": {"z": pyro.distributions.constraints.real}}
    with pytest.raises(RuntimeError, match="inside"), param_scope(other):
        assert _store() == {"z": 5.0}
        raise RuntimeError("inside")
    assert _store() == {"a": 1.0}


def test_none_leaves_the_store_as_it_is():
    pyro.param("a", torch.tensor(1.0))
    with param_scope(None):
        pyro.param("b", torch.tensor(2.0))
    assert _store() == {"a": 1.0, "b": 2.0}
