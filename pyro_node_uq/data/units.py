"""Units (subjects, specimens, batches) with their own observation times, dose schedules and covariates, and
the two ways to hold data out: new units, or later observations of known units."""
import itertools
import math
from dataclasses import dataclass, replace

import torch

from ..distributions.doses import DoseSchedule
from .problem import Split

__all__ = ["Units", "refine_grid", "split_by_time", "split_units", "unit_folds", "units_problem"]


def _take(doses, index):
    return None if doses is None else DoseSchedule(*(v[index] for v in doses))


@dataclass
class Units(Split):
    """A :class:`~pyro_node_uq.data.Split` of units with per-unit dose schedules and covariates.

    Observations lie on the union grid ``t`` of every unit's observation times, ``mask`` marking each unit's own
    (:attr:`unit_times` gives the ragged per-unit times, padded).  The model receives :attr:`extras` as keyword
    arguments: the doses, the covariates and whether these units are new (their random effects are then drawn
    from the population, not from the fitted units' posterior).

    :ivar doses: :class:`~pyro_node_uq.distributions.DoseSchedule` of the units, or ``None``.
    :ivar covariates: ``(N, C)`` baseline covariates, or ``None``.
    :ivar covariate_names: names of the covariate columns.
    :ivar censored: boolean ``(N, T)``: observed entries that are below the quantification limit (``y`` holds
        the limit there), or ``None``.
    :ivar bool new_units: these units were not fitted.
    :ivar eta_true: the true random effects ``(N, k)`` of synthetic units, or ``None``.
    :ivar obs_cmt: 0-based compartment (hidden component) that the observations measure, when known.
    """

    doses: DoseSchedule = None
    covariates: torch.Tensor = None
    covariate_names: tuple = ()
    censored: torch.Tensor = None
    new_units: bool = False
    eta_true: torch.Tensor = None
    obs_cmt: int = None

    def __post_init__(self):
        super().__post_init__()
        if self.mask is None:
            self.mask = torch.ones(self.y.shape[:2], dtype=torch.bool, device=self.y.device)

    @property
    def extras(self):
        """Keyword arguments the hierarchical model needs besides ``(t, x, y, mask)``."""
        return {"doses": self.doses, "covariates": self.covariates, "new_units": self.new_units}

    @property
    def kwargs(self):
        return {"mask": self.mask, "censored": self.censored, **self.extras}

    @property
    def unit_times(self):
        """``(times, observed)``: each unit's own observation times, left-aligned and padded, ``(N, T_max)``."""
        n_obs = self.mask.sum(1)
        width = int(n_obs.max()) if len(self) else 0
        order = torch.argsort((~self.mask).to(torch.int8), dim=1, stable=True)[:, :width]
        observed = torch.arange(width, device=self.t.device) < n_obs[:, None]
        return torch.where(observed, self.t[order], torch.zeros_like(self.t[order])), observed

    def select(self, index, **changes):
        """The units at ``index`` (a 1-D index or boolean tensor), with fields replaced by ``changes``."""
        index = torch.as_tensor(index, device=self.y.device)
        take = lambda v: None if v is None else v[index]
        fields = {"x": take(self.x), "y": self.y[index], "mask": self.mask[index], "y_true": take(self.y_true),
                      "h_true": take(self.h_true), "ids": self.ids[index], "doses": _take(self.doses, index),
                      "covariates": take(self.covariates), "censored": take(self.censored), "eta_true": take(self.eta_true)}
        fields.update(changes)
        return replace(self, **fields)


def refine_grid(units, max_step):
    """The same units on a finer union grid: unobserved times inserted so that no two consecutive grid times are
    more than ``max_step`` apart (a fixed-step solve steps on the grid; sparse late samples would otherwise make
    one step of many hours).

    :param Units units: units without inputs ``x`` (inputs would need resampling).
    :param float max_step: largest gap left in the grid.

    Example::

        >>> u = Units(t=torch.tensor([0.0, 1.0, 4.0]), x=None, y=torch.ones(1, 3, 1))
        >>> r = refine_grid(u, 1.0)
        >>> r.t.tolist(), r.mask.tolist()
        ([0.0, 1.0, 2.0, 3.0, 4.0], [[True, True, False, False, True]])
    """
    if units.x is not None:
        raise ValueError("refine_grid: units with inputs x are not supported (the inputs would need resampling)")
    if not max_step > 0:
        raise ValueError(f"max_step: expected a positive number, got {max_step!r}")
    t = units.t
    fill = [torch.linspace(a, b, math.ceil(float(b - a) / max_step) + 1, dtype=t.dtype, device=t.device)[1:-1]
            for a, b in itertools.pairwise(t) if float(b - a) > max_step]
    grid = torch.cat([t, *fill]).sort().values
    pos = torch.searchsorted(grid, t)

    def spread(v):
        if v is None:
            return None
        out = v.new_zeros((v.shape[0], len(grid)) + v.shape[2:])
        out[:, pos] = v
        return out

    return replace(units, t=grid, y=spread(units.y), mask=spread(units.mask), y_true=spread(units.y_true),
                   h_true=spread(units.h_true), censored=spread(units.censored))


def split_units(units, test_fraction=0.25, seed=0):
    """Hold out whole units: ``(train, test)``, ``test`` marked ``new_units``, chosen by a seeded permutation.

    :param Units units: the units to split.
    :param float test_fraction: fraction of units held out (at least one unit on each side).
    :param int seed: seed of the permutation.

    Example::

        >>> u = Units(t=torch.arange(3.0), x=None, y=torch.zeros(8, 3, 1))
        >>> train, test = split_units(u, 0.25)
        >>> len(train), len(test), test.new_units
        (6, 2, True)
    """
    n = len(units)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    if n < 2:
        raise ValueError(f"split_units: need at least 2 units to hold some out, got {n}")
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    return _hold_out(units, _permutation(units, seed), 0, n_test)


def _permutation(units, seed):
    return torch.randperm(len(units), generator=torch.Generator().manual_seed(seed)).to(units.y.device)


def _hold_out(units, perm, start, stop):
    """``(train, test)``: ``test`` the units ``perm[start:stop]`` (marked ``new_units``), ``train`` the others."""
    test_idx = perm[start:stop].sort().values
    train_idx = torch.cat([perm[:start], perm[stop:]]).sort().values
    return units.select(train_idx), units.select(test_idx, new_units=True)


def unit_folds(units, num_folds, seed=0):
    """K-fold cross-validation over units: ``num_folds`` pairs ``(train, test)`` in which every unit is held out
    (in ``test``, marked ``new_units``) exactly once, the folds as equal in size as ``len(units)`` allows.  With
    only a dozen units one held-out set of three is mostly noise; scores pooled over the folds' held-out units
    rest on every unit.

    The folds cut the seeded permutation of :func:`split_units` into consecutive blocks, so with ``num_folds =
    1 / test_fraction`` fold 0 is ``split_units(units, test_fraction, seed)``.

    :param Units units: the units to split.
    :param int num_folds: number of folds, ``2 <= num_folds <= len(units)``.
    :param int seed: seed of the permutation.
    :returns: list of ``num_folds`` pairs ``(train, test)``.

    Example::

        >>> u = Units(t=torch.arange(3.0), x=None, y=torch.zeros(10, 3, 1))
        >>> folds = unit_folds(u, 4)
        >>> [len(test) for _, test in folds], sorted(sum((test.ids.tolist() for _, test in folds), []))
        ([3, 3, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    n = len(units)
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or not 2 <= num_folds <= n:
        raise ValueError(f"num_folds: expected an integer in [2, {n}] (the number of units), got {num_folds!r}")
    perm = _permutation(units, seed)
    bounds = [k * (n // num_folds) + min(k, n % num_folds) for k in range(num_folds + 1)]
    return [_hold_out(units, perm, a, b) for a, b in itertools.pairwise(bounds)]


def split_by_time(units, fraction=2 / 3):
    """Hold out each unit's later observations: ``(early, late)``, the same units with disjoint masks.

    Unit ``i`` with ``n_i`` observations keeps its first ``ceil(fraction * n_i)`` in ``early``; the dose schedules
    are kept whole in both (future doses are known when forecasting).

    :param Units units: the units to split.
    :param float fraction: fraction of each unit's observations in ``early`` (1: all of them, ``late`` empty).

    Example::

        >>> u = Units(t=torch.arange(6.0), x=None, y=torch.zeros(1, 6, 1))
        >>> early, late = split_by_time(u, 1 / 3)
        >>> early.mask.tolist(), late.mask.tolist()
        ([[True, True, False, False, False, False]], [[False, False, True, True, True, True]])
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
    rank = units.mask.long().cumsum(1)  # 1-based rank of each observation within its unit
    keep = torch.tensor([math.ceil(fraction * int(n)) for n in units.mask.sum(1)], device=rank.device)
    early = units.mask & (rank <= keep[:, None])
    return replace(units, mask=early), replace(units, mask=units.mask & ~early)


def _forecast_split(fitted, fraction):
    """``(train, extrapolation)`` of the fitted units: :func:`split_by_time` at ``fraction``, with no extrapolation
    split (``None``) when ``fraction`` is ``None`` or holds nothing out (1)."""
    if fraction is None:
        return fitted, None
    early, late = split_by_time(fitted, fraction)
    return early, (late if bool(late.mask.any()) else None)


def units_problem(name, description, units, test_fraction=0.25, time_fraction=2 / 3, seed=0, num_folds=None,
                  fold=0, **fields):
    """A :class:`~pyro_node_uq.data.Problem` from units: ``train`` = the fitted units' first observations,
    ``extrapolation`` = their later observations (:func:`split_by_time`; none with ``time_fraction=1``), ``test`` =
    held-out new units (:func:`split_units`, all their observations).

    :param str name, description: of the problem.
    :param Units units: all units.
    :param float test_fraction: fraction of units held out.
    :param float time_fraction: fraction of each fitted unit's observations in ``train``; 1: all of them (fit on
        everything the fitted units have; the problem then has no extrapolation split).
    :param int seed: seed of the unit split.
    :param int num_folds: hold out fold ``fold`` of :func:`unit_folds` instead (``test_fraction`` is then not
        used): ``num_folds`` problems with ``fold = 0, ..., num_folds - 1`` hold out every unit once.
    :param int fold: which fold, ``0 <= fold < num_folds``.
    :param fields: other :class:`~pyro_node_uq.data.Problem` fields (``obs_names``, ``model_kwargs``...).
    :raises ValueError: when fewer than 2 units are left to fit.

    Example::

        >>> u = Units(t=torch.arange(6.0), x=None, y=torch.ones(8, 6, 1))
        >>> p = units_problem("toy", "", u, obs_names=("y",))
        >>> len(p.train), len(p.test), int(p.train.mask.sum()), int(p.extrapolation.mask.sum())
        (6, 2, 24, 12)
    """
    from .problem import Problem

    if num_folds is None:
        fitted, new = split_units(units, test_fraction, seed)
    else:
        folds = unit_folds(units, num_folds, seed)
        if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < num_folds:
            raise ValueError(f"fold: expected an integer in [0, {num_folds}), got {fold!r}")
        fitted, new = folds[fold]
    if len(fitted) < 2:  # one fitted unit: the units' spread (the random effects' scale) is not identifiable
        raise ValueError(f"{name}: {len(units)} units, of which {len(new)} held out as new units, leave "
                         f"{len(fitted)} to fit; a model of units with random effects needs at least 2 fitted units "
                         "(give more units, or hold out fewer: test_fraction / --test-fraction)")
    early, late = _forecast_split(fitted, time_fraction)
    fields.setdefault("model_class", "HierarchicalNODEModel")
    return Problem(name=name, description=description, train=early, test=new, extrapolation=late, **fields)
