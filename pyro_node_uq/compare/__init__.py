"""Side-by-side comparison of inference methods on one problem: the runner, the cache of shared fits, scoring,
figures and the report.  The methods themselves are registered in :mod:`pyro_node_uq.methods`.

Example::

    >>> from pyro_node_uq.methods import METHODS
    >>> "autonormal" in METHODS and METHODS["map"].options("chemical", quick=True)["num_steps"] > 0
    True
"""
from .context import RunContext
from .runner import run_comparison
from .scoring import auroc, hidden_comparable, score_result, spearman

__all__ = ["RunContext", "auroc", "hidden_comparable", "run_comparison", "score_result", "spearman"]
