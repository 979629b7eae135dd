"""Problems: synthetic generators (chemical, material, static regression and classification) and real data sets,
with splits."""
from .arrays import read_trajectories, trajectories_problem
from .chemical import chemical
from .elastoplastic import elastoplastic, return_mapping
from .events import read_events
from .nonmem import events_problem
from .pk import pk_repeated, theophylline_events
from .problem import Problem, Split, random_sines
from .real import hare_lynx, theophylline
from .specimens import specimens
from .static import StaticProblem, StaticSplit, gap_regression, spirals
from .structured import structured_problem
from .units import (
    Units,
    refine_grid,
    split_by_time,
    split_units,
    unit_folds,
    units_problem,
)
from .viscoelastic import viscoelastic

PROBLEMS = {
    "chemical": chemical,
    "viscoelastic": viscoelastic,
    "elastoplastic": elastoplastic,
    "theophylline": theophylline,
    "hare_lynx": hare_lynx,
    "pk_repeated": pk_repeated,
    "theophylline_events": theophylline_events,
    "specimens": specimens,
    "gap_regression": gap_regression,
    "spirals": spirals,
}


def load_problem(name, dtype=None, device=None, **kwargs):
    """Build a registered problem by name.

    :param str name: one of :data:`PROBLEMS` (``chemical``, ``viscoelastic``, ``elastoplastic``,
        ``theophylline``, ``hare_lynx``, ``gap_regression``, ``spirals``; units with random effects:
        ``pk_repeated``, ``theophylline_events``, ``specimens``).
    :param torch.dtype dtype: cast the data (default: ``torch.get_default_dtype()``).
    :param device: put the data there (default: ``torch.get_default_device()``); the data are always generated
        on the CPU (seeded CPU generators), so a problem is the same on every device.
    :param kwargs: passed to the problem's constructor (``seed``, ``num_train``, ...).
    :rtype: Problem
    """
    import torch

    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose from {sorted(PROBLEMS)}")
    with torch.device("cpu"):  # seeded CPU generators, whatever the default device
        problem = PROBLEMS[name](**kwargs)
    return problem.to(dtype or torch.get_default_dtype(), device or torch.get_default_device())


__all__ = ["PROBLEMS", "Problem", "Split", "StaticProblem", "StaticSplit", "Units", "chemical", "elastoplastic",
           "events_problem", "gap_regression", "hare_lynx", "load_problem", "pk_repeated", "random_sines",
           "read_events", "read_trajectories", "refine_grid", "return_mapping", "specimens", "spirals",
           "split_by_time", "split_units", "structured_problem", "theophylline", "theophylline_events",
           "trajectories_problem", "unit_folds", "units_problem", "viscoelastic"]
