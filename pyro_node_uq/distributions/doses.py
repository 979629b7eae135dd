"""Dose schedules: bolus and infusion events per unit, as padded tensors the NODE solve consumes.

A unit (patient, specimen, batch) ``i`` receives doses ``k = 1..K_i``.  Dose ``k`` given at time ``s`` with amount
``a`` into state component (compartment) ``c`` acts on the hidden state ``h`` of the NODE:

* a **bolus** (``rate == 0``) makes the state jump, ``h_c(s) = h_c(s-) + a``.  The state at ``s`` includes the
  dose (dose first, then observe: an observation at a bolus time sees the dose);
* an **infusion** (``rate > 0``) adds the constant ``rate`` to ``dh_c/dt`` on ``[s, s + a / rate)``, a
  piecewise-constant input with known breakpoints;
* a **modelled infusion** (``rate`` -1 or -2, NONMEM's codes) is an infusion whose rate (-1) or duration (-2) is a
  parameter of the model, not of the data: :meth:`DoseSchedule.resolved` turns the parameter's values into the
  infusion's rate and end.  The schedule's own :meth:`~DoseSchedule.bolus_at`, :meth:`~DoseSchedule.infusion_on`
  and :meth:`~DoseSchedule.end` treat it as neither a bolus nor an infusion (its end is its start), so only a
  model that resolves it (:class:`~pyro_node_uq.models.GreyBoxNODEModel`) accepts it.

Units have different numbers of doses, so the schedule is stored padded to ``K = max_i K_i`` with a mask: every
field is an ``(N, K)`` tensor for ``N`` units.  Padded entries (``mask`` False) are ignored whatever they hold.

Building one from a long-format table (one row per dose, NONMEM ``ID, TIME, AMT, CMT, RATE``): group the rows by
unit, then :meth:`DoseSchedule.from_lists` pads them, e.g. ``DoseSchedule.from_lists(times, amounts,
compartments, rates)`` with one list per unit (``CMT`` is 1-based in NONMEM, the compartment here is the
0-based index into the hidden state, so pass ``CMT - 1``; NONMEM's ``RATE`` is the rate, 0 for a bolus).
"""
from typing import NamedTuple

import torch

__all__ = ["MODELLED_DURATION", "MODELLED_RATE", "DoseSchedule"]

MODELLED_RATE, MODELLED_DURATION = -1.0, -2.0  # NONMEM's RATE codes: the rate / the duration is a model parameter


class DoseSchedule(NamedTuple):
    """Padded per-unit dose events; every field is ``(N, K)`` (units x doses).

    :param torch.Tensor time: dose (or infusion start) times, float.
    :param torch.Tensor amount: dose amounts, float (an infusion lasts ``amount / rate``).
    :param torch.Tensor compartment: 0-based index of the hidden-state component dosed, integer.
    :param torch.Tensor rate: infusion rates, float; ``0`` marks a bolus, ``-1`` / ``-2`` an infusion whose rate /
        duration is a model parameter (:data:`MODELLED_RATE`, :data:`MODELLED_DURATION`).
    :param torch.Tensor mask: boolean, True for real doses, False for padding.

    Example::

        >>> d = DoseSchedule.from_lists([[0.0, 12.0], [0.0]], [[100.0, 50.0], [80.0]],
        ...                             rates=[[0.0, 0.0], [40.0]])
        >>> d.num_units, d.max_doses, d.mask.tolist()
        (2, 2, [[True, True], [True, False]])
        >>> d.breakpoints().tolist()   # bolus times, infusion starts and ends (80 / 40 = 2 h)
        [0.0, 2.0, 12.0]
    """

    time: torch.Tensor
    amount: torch.Tensor
    compartment: torch.Tensor
    rate: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def from_lists(cls, times, amounts, compartments=None, rates=None, dtype=None, device=None):
        """Pad per-unit lists (one list per unit) into a schedule.

        :param times: per unit, its dose times.
        :param amounts: per unit, its dose amounts (same lengths as ``times``).
        :param compartments: per unit, 0-based compartments (default 0 for every dose).
        :param rates: per unit, infusion rates (default 0: every dose a bolus).
        :param torch.dtype dtype: float dtype of times, amounts and rates (default: torch's default dtype).
        :param device: torch device.
        """
        n = len(times)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        for name, val in (("amounts", amounts), ("compartments", compartments), ("rates", rates)):
            if val is not None and (len(val) != n or any(len(v) != len(t) for v, t in zip(val, times))):
                raise ValueError(f"DoseSchedule.from_lists: {name} must have one list per unit with as many "
                                 f"entries as times, got lengths {[len(v) for v in val]} for times "
                                 f"{[len(t) for t in times]}")
        k = max([len(t) for t in times] + [1])

        def pad(rows, fill, dt):
            rows = [[fill] * len(t) for t in times] if rows is None else rows
            return torch.tensor([list(r) + [fill] * (k - len(r)) for r in rows], dtype=dt, device=device)

        mask = torch.tensor([[j < len(t) for j in range(k)] for t in times], dtype=torch.bool, device=device)
        out = cls(pad(times, 0.0, dtype), pad(amounts, 0.0, dtype), pad(compartments, 0, torch.long),
                  pad(rates, 0.0, dtype), mask.reshape(n, k))
        out.check()
        return out

    @property
    def num_units(self):
        return self.time.shape[0]

    @property
    def max_doses(self):
        return self.time.shape[1]

    def check(self, hidden_dim=None, num_units=None, modelled=True):
        """Validate shapes, dtypes and values; errors name the field.

        :param int hidden_dim: if given, compartments must lie in ``[0, hidden_dim)``.
        :param int num_units: if given, the schedule must have this many units (or 1, shared by all).
        :param bool modelled: whether modelled infusions (rate -1 or -2) are accepted.
        :returns: ``self``.
        """
        shape = self.time.shape
        for name in self._fields:
            v = getattr(self, name)
            if not torch.is_tensor(v) or v.dim() != 2 or v.shape != shape:
                raise ValueError(f"DoseSchedule: {name} must be a tensor of shape (units, doses) = {tuple(shape)}, "
                                 f"got {getattr(v, 'shape', type(v).__name__)}")
        if self.mask.dtype != torch.bool:
            raise ValueError(f"DoseSchedule: mask must be boolean, got {self.mask.dtype}")
        if self.compartment.dtype.is_floating_point or self.compartment.dtype == torch.bool:
            raise ValueError(f"DoseSchedule: compartment must be an integer tensor, got {self.compartment.dtype}")
        m = self.mask
        for name in ("time", "amount", "rate"):
            v = getattr(self, name)
            if not v.dtype.is_floating_point:
                raise ValueError(f"DoseSchedule: {name} must be floating point, got {v.dtype}")
            if not torch.isfinite(v[m]).all():
                raise ValueError(f"DoseSchedule: {name} has non-finite values at real doses")
        coded = (self.rate[m] == MODELLED_RATE) | (self.rate[m] == MODELLED_DURATION)
        if ((self.rate[m] < 0) & ~coded).any():
            raise ValueError("DoseSchedule: rate must be >= 0 (0 marks a bolus) or -1 / -2 (a modelled rate / "
                             f"duration), got {sorted(set(self.rate[m][self.rate[m] < 0].tolist()))}")
        if coded.any() and not modelled:
            raise ValueError("doses: modelled infusions (rate -1: the rate, -2: the duration is a model parameter, "
                             "NONMEM's RATE -1 / -2) need a model with those parameters, a GreyBoxNODEModel with "
                             "dose_parameters (such as 'D1'); this solve has none")
        if ((self.amount[m] <= 0) & ((self.rate[m] > 0) | coded)).any():
            raise ValueError("DoseSchedule: an infusion (rate > 0, or a modelled one, -1 / -2) needs a positive "
                             "amount")
        cmt = self.compartment[m]
        if (cmt < 0).any() or (hidden_dim is not None and (cmt >= hidden_dim).any()):
            raise ValueError(f"DoseSchedule: compartment must lie in [0, hidden_dim={hidden_dim}), got values "
                             f"{sorted(set(cmt.tolist()))}")
        if num_units is not None and shape[0] not in (1, num_units):
            raise ValueError(f"DoseSchedule: expected {num_units} units (the trajectories' plate), got {shape[0]}")
        return self

    @property
    def modelled(self):
        """Boolean ``(N, K)``: the real doses whose rate or duration is a model parameter (rate -1 or -2)."""
        return self.mask & (self.rate < 0)

    def resolved(self, value):
        """The rate and end of every dose once the modelled ones' parameters are known.

        :param torch.Tensor value: per dose, its parameter ``batch + (N, K)`` (broadcasting): the rate of a dose
            with rate -1, the duration of one with rate -2 (positive; read only at modelled doses).
        :returns: ``(rate, end)``, each ``batch + (N, K)``: a modelled dose's rate and end (``amount / duration``
            and ``time + duration``, or the rate and ``time + amount / rate``), every other dose's own
            (``rate`` and :meth:`end`).

        Example::

            >>> d = DoseSchedule.from_lists([[0.0, 12.0]], [[100.0, 100.0]], rates=[[-1.0, -2.0]])
            >>> rate, end = d.resolved(torch.tensor([[50.0, 4.0]]))   # rate 50 for the first, 4 h for the second
            >>> rate.tolist(), end.tolist()
            ([[50.0, 25.0]], [[2.0, 16.0]])
        """
        by_rate, by_duration = self.rate == MODELLED_RATE, self.rate == MODELLED_DURATION
        safe = torch.where(by_rate | by_duration, value, torch.ones_like(value))
        rate = torch.where(by_rate, safe, torch.where(by_duration, self.amount / safe, self.rate))
        end = torch.where(by_rate, self.time + self.amount / safe, torch.where(by_duration, self.time + safe,
                                                                               self.end()))
        return rate, end

    def end(self):
        """End time of every dose: ``time + amount / rate`` for infusions, ``time`` for boluses and modelled
        infusions (see :meth:`resolved`), ``(N, K)``."""
        infusion = self.rate > 0
        return torch.where(infusion, self.time + self.amount / torch.where(infusion, self.rate, 1.0), self.time)

    def breakpoints(self):
        """Sorted unique times where any unit's state jumps or its input switches (1-D)."""
        return torch.unique(torch.cat([self.time[self.mask], self.end()[self.mask]]))

    def bolus_at(self, t, hidden_dim):
        """Sum of the boluses given exactly at time ``t``, as increments ``(N, hidden_dim)``."""
        hit = self.mask & (self.rate == 0) & (self.time == t)
        return self._scatter(torch.where(hit, self.amount, 0.0), hidden_dim)

    def infusion_on(self, start, stop, hidden_dim):
        """Total infusion rate into each compartment on the interval ``[start, stop]``, ``(N, hidden_dim)``.

        The interval must lie between two consecutive :meth:`breakpoints` (no infusion starts or stops inside).
        """
        on = self.mask & (self.rate > 0) & (self.time <= start) & (self.end() >= stop)
        return self._scatter(torch.where(on, self.rate, 0.0), hidden_dim)

    def _scatter(self, values, hidden_dim):
        out = values.new_zeros(values.shape[0], hidden_dim)
        return out.scatter_add(1, self.compartment.clamp(0, hidden_dim - 1), values)
