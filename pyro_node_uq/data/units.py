"""Units (subjects, specimens, batches) with their own observation times, dose schedules and covariates, and
the two ways to hold data out: new units, or later observations of known units."""
import math
from dataclasses import dataclass, replace

import torch

from .problem import Split

__all__ = ["Doses", "Units", "split_by_time", "split_units", "units_problem"]


def _cast(value, dtype=None, device=None):
    if not torch.is_tensor(value):
        return value
    return value.to(device=device, dtype=dtype if value.is_floating_point() else None)


@dataclass
class Doses:
    """Per-unit dose schedules, padded to the largest number of doses ``D``.

    :ivar times: dose times ``(N, D)``.
    :ivar amounts: amounts ``(N, D)`` (zero where ``mask`` is False).
    :ivar cmt: 0-based compartment (hidden-state component) receiving each dose ``(N, D)``, long.
    :ivar rates: infusion rates ``(N, D)``; 0 is a bolus (the amount is added at once).
    :ivar mask: boolean ``(N, D)`` of real (not padding) doses.

    Example::

        >>> d = Doses.bolus(torch.tensor([[0.0, 12.0]]), torch.tensor([[100.0, 50.0]]))
        >>> d.breakpoints().tolist(), d.duration.tolist()
        ([0.0, 12.0], [[0.0, 0.0]])
    """

    times: torch.Tensor
    amounts: torch.Tensor
    cmt: torch.Tensor
    rates: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def bolus(cls, times, amounts, cmt=0):
        """Bolus doses ``times``/``amounts`` ``(N, D)`` into compartment ``cmt`` (all real)."""
        return cls(times, amounts, torch.full(times.shape, cmt, dtype=torch.long), torch.zeros_like(amounts),
                   torch.ones(times.shape, dtype=torch.bool))

    @classmethod
    def empty(cls, n, like):
        """No doses for ``n`` units (tensors like ``like``)."""
        z = like.new_zeros(n, 0)
        return cls(z, z, z.long(), z, z.bool())

    def __len__(self):
        return self.times.shape[0]

    @property
    def duration(self):
        """Infusion durations ``amount / rate`` ``(N, D)`` (0 for boluses and padding)."""
        safe = torch.where(self.rates > 0, self.rates, torch.ones_like(self.rates))
        return torch.where((self.rates > 0) & self.mask, self.amounts / safe, torch.zeros_like(self.amounts))

    def breakpoints(self):
        """Sorted distinct times where any unit's state jumps or input switches (bolus, infusion start or end)."""
        ends = (self.times + self.duration)[self.mask & (self.rates > 0)]
        return torch.unique(torch.cat([self.times[self.mask], ends]))

    def infusion_rate(self, start, num_states):
        """Per-unit infusion input ``(N, num_states)`` in force on the interval starting at ``start``."""
        on = self.mask & (self.rates > 0) & (self.times <= start) & (start < self.times + self.duration)
        out = self.rates.new_zeros(len(self), num_states)
        return out.scatter_add_(1, self.cmt.clamp(max=num_states - 1), torch.where(on, self.rates, 0 * self.rates))

    def bolus_at(self, time, num_states):
        """Per-unit bolus amounts ``(N, num_states)`` given at ``time``."""
        hit = self.mask & (self.rates <= 0) & (self.times == time)
        out = self.amounts.new_zeros(len(self), num_states)
        return out.scatter_add_(1, self.cmt.clamp(max=num_states - 1), torch.where(hit, self.amounts, 0 * self.amounts))

    def select(self, index):
        return Doses(*(v[index] for v in (self.times, self.amounts, self.cmt, self.rates, self.mask)))

    def to(self, dtype=None, device=None):
        return Doses(*(_cast(v, dtype, device) for v in (self.times, self.amounts, self.cmt, self.rates, self.mask)))


@dataclass
class Units(Split):
    """A :class:`~pyro_node_uq.data.Split` of units with per-unit dose schedules and covariates.

    Observations lie on the union grid ``t`` of every unit's observation times, ``mask`` marking each unit's own
    (:attr:`unit_times` gives the ragged per-unit times, padded).  The model receives :attr:`extras` as keyword
    arguments: the doses, the covariates and whether these units are new (their random effects are then drawn
    from the population, not from the fitted units' posterior).

    :ivar doses: :class:`Doses` of the units.
    :ivar covariates: ``(N, C)`` baseline covariates, or ``None``.
    :ivar covariate_names: names of the covariate columns.
    :ivar censored: boolean ``(N, T)``: observed entries that are below the quantification limit (``y`` holds
        the limit there), or ``None``.
    :ivar bool new_units: these units were not fitted.
    :ivar eta_true: the true random effects ``(N, k)`` of synthetic units, or ``None``.
    :ivar obs_cmt: 0-based compartment (hidden component) that the observations measure, when known.
    """

    doses: Doses = None
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
        if self.doses is None:
            self.doses = Doses.empty(len(self), self.t)

    @property
    def extras(self):
        """Keyword arguments the hierarchical model needs besides ``(t, x, y, mask)``."""
        return {"doses": self.doses, "covariates": self.covariates, "new_units": self.new_units}

    @property
    def kwargs(self):
        return {"mask": self.mask, **self.extras}

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
        take = lambda v: None if v is None else v[index]  # noqa: E731
        fields = dict(x=take(self.x), y=self.y[index], mask=self.mask[index], y_true=take(self.y_true),
                      h_true=take(self.h_true), ids=self.ids[index], doses=self.doses.select(index),
                      covariates=take(self.covariates), censored=take(self.censored), eta_true=take(self.eta_true))
        fields.update(changes)
        return replace(self, **fields)

    def to(self, dtype=None, device=None):
        out = super().to(dtype, device)
        out.doses = self.doses.to(dtype, device)
        return out


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
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(units.y.device)
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    return units.select(train_idx), units.select(test_idx, new_units=True)


def split_by_time(units, fraction=2 / 3):
    """Hold out each unit's later observations: ``(early, late)``, the same units with disjoint masks.

    Unit ``i`` with ``n_i`` observations keeps its first ``ceil(fraction * n_i)`` in ``early``; the dose schedules
    are kept whole in both (future doses are known when forecasting).

    :param Units units: the units to split.
    :param float fraction: fraction of each unit's observations in ``early``.

    Example::

        >>> u = Units(t=torch.arange(6.0), x=None, y=torch.zeros(1, 6, 1))
        >>> early, late = split_by_time(u, 1 / 3)
        >>> early.mask.tolist(), late.mask.tolist()
        ([[True, True, False, False, False, False]], [[False, False, True, True, True, True]])
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: expected a number in (0, 1), got {fraction!r}")
    rank = units.mask.long().cumsum(1)  # 1-based rank of each observation within its unit
    keep = torch.tensor([math.ceil(fraction * int(n)) for n in units.mask.sum(1)], device=rank.device)
    early = units.mask & (rank <= keep[:, None])
    return replace(units, mask=early), replace(units, mask=units.mask & ~early)


def units_problem(name, description, units, test_fraction=0.25, time_fraction=2 / 3, seed=0, **fields):
    """A :class:`~pyro_node_uq.data.Problem` from units: ``train`` = the fitted units' first observations,
    ``extrapolation`` = their later observations (:func:`split_by_time`), ``test`` = held-out new units
    (:func:`split_units`, all their observations).

    :param str name, description: of the problem.
    :param Units units: all units.
    :param float test_fraction: fraction of units held out.
    :param float time_fraction: fraction of each fitted unit's observations in ``train``.
    :param int seed: seed of the unit split.
    :param fields: other :class:`~pyro_node_uq.data.Problem` fields (``obs_names``, ``model_kwargs``...).

    Example::

        >>> u = Units(t=torch.arange(6.0), x=None, y=torch.ones(8, 6, 1))
        >>> p = units_problem("toy", "", u, obs_names=("y",))
        >>> len(p.train), len(p.test), int(p.train.mask.sum()), int(p.extrapolation.mask.sum())
        (6, 2, 24, 12)
    """
    from .problem import Problem

    fitted, new = split_units(units, test_fraction, seed)
    early, late = split_by_time(fitted, time_fraction)
    fields.setdefault("model_class", "HierarchicalNODEModel")
    return Problem(name=name, description=description, train=early, test=new, extrapolation=late, **fields)
