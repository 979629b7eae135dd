"""The package's one call into ArviZ's conversion API: moving to ``arviz-base`` is a change here.

:mod:`~pyro_node_uq.diagnostics.arviz` (NODE and process models) and
:mod:`~pyro_node_uq.diagnostics.arviz_static` (static problems) build their groups as NumPy arrays with
:func:`numpy` and hand them to :func:`from_dict`.
"""
import warnings

import arviz as az

__all__ = ["from_dict", "numpy"]


def numpy(value):
    """A tensor as a NumPy array (detached, on the CPU)."""
    return value.detach().cpu().numpy()


def from_dict(**groups):
    """``az.from_dict(**groups)`` without its "More chains than draws" warning: ensembles and short kernel runs
    are stored with members or particles as chains on purpose (e.g. 5 members, 1 draw each).

    Example::

        >>> import numpy as np
        >>> from_dict(posterior={"w": np.zeros((5, 1, 3))}).posterior["w"].shape
        (5, 1, 3)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return az.from_dict(**groups)
