"""The one call into ArviZ's conversion: members as chains without ArviZ's shape warning, other warnings kept,
tensors to NumPy."""
import warnings

import numpy as np
import torch

from pyro_node_uq.diagnostics.az_convert import from_dict, numpy


def test_members_as_chains_convert_without_arviz_shape_warning():
    """Ensembles store members as chains with one draw each, on purpose: no "More chains than draws" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = from_dict(posterior={"w": np.zeros((5, 1, 3))})
    assert idata.posterior["w"].shape == (5, 1, 3)


def test_only_the_shape_warning_is_silenced(monkeypatch):
    """ArviZ's "More chains than draws" is dropped; any other warning of the conversion reaches the caller."""
    import arviz as az

    def convert(**groups):
        warnings.warn("More chains (5) than draws (1).", UserWarning)
        warnings.warn("something else", UserWarning)
        return groups

    monkeypatch.setattr(az, "from_dict", convert)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert from_dict(posterior=1) == {"posterior": 1}
    assert [str(w.message) for w in caught] == ["something else"]


def test_numpy_detaches_and_copies_to_the_cpu():
    x = torch.ones(2, 3, requires_grad=True) * 2
    a = numpy(x)
    assert isinstance(a, np.ndarray) and a.shape == (2, 3) and (a == 2).all() and a.dtype == np.float64
