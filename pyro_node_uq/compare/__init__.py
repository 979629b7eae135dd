"""Side-by-side comparison of inference methods on one problem: registry, scoring, figures and report.

Example::

    >>> from pyro_node_uq.compare import METHODS
    >>> "autonormal" in METHODS and METHODS["map"].options("chemical", quick=True)["num_steps"] > 0
    True
"""
from .context import MethodSkipped, RunContext
from .methods import DEMO_METHODS, METHODS, Method, register, resolve_methods
from .runner import run_comparison
from .scoring import auroc, hidden_comparable, score_result, spearman

__all__ = ["DEMO_METHODS", "METHODS", "Method", "MethodSkipped", "RunContext", "auroc", "hidden_comparable",
           "register", "resolve_methods", "run_comparison", "score_result", "spearman"]
