"""Read a long-format event table in the NONMEM / nlmixr2 convention into :class:`~pyro_node_uq.data.Units`."""
import math
from pathlib import Path

import torch

from ..distributions.doses import MODELLED_DURATION, MODELLED_RATE, DoseSchedule
from .units import Units

__all__ = ["read_csv_text", "read_events"]

_MISSING = {"", ".", "na", "nan", "NA", "NaN"}


class _Table:
    """Column access with errors that name the row (1-based data row) and the column."""

    def __init__(self, frame, source, caller="read_events"):
        self.frame, self.source, self.caller = frame, source, caller

    def has(self, column):
        return column is not None and column in self.frame.columns

    def require(self, column, argument):
        if not self.has(column):
            raise ValueError(f"{self.caller}: {self.source} has no column {column!r} (argument {argument}=); "
                             f"its columns are {list(self.frame.columns)}")

    def numbers(self, column, missing_ok=False, default=None):
        """Column as a list of floats (``None`` for a missing entry when ``missing_ok``)."""
        if not self.has(column):
            return [default] * len(self.frame)
        out = []
        for row, value in enumerate(self.frame[column].tolist(), start=1):
            text = str(value).strip()
            if text in _MISSING or (isinstance(value, float) and math.isnan(value)):
                if not missing_ok:
                    raise ValueError(f"{self.caller}: {self.source}, row {row}, column {column!r}: missing value")
                out.append(None)
                continue
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{self.caller}: {self.source}, row {row}, column {column!r}: expected a number, "
                                 f"got {text!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"{self.caller}: {self.source}, row {row}, column {column!r}: not finite ({text!r})")
            out.append(number)
        return out


def read_csv_text(path, caller):
    """The CSV file ``path`` as a ``DataFrame`` of strings; a missing, empty, binary or unparsable file is refused
    with an error naming it (not pandas' message)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{caller}: no file {str(path)!r}")
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head.strip():
        raise ValueError(f"{caller}: {str(path)!r} is empty; expected a CSV table with a header row")
    if b"\0" in head:
        raise ValueError(f"{caller}: {str(path)!r} is a binary file, not a CSV text table")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{caller}: {str(path)!r} is not a readable CSV table: {str(e).strip() or type(e).__name__}"
                         ) from None
    if frame.empty:
        raise ValueError(f"{caller}: {str(path)!r} has a header but no data rows")
    return frame


def _load(table):
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return _Table(table.reset_index(drop=True), "the table")
    if isinstance(table, (str, Path)):
        return _Table(read_csv_text(table, "read_events"), repr(str(table)))
    raise TypeError(f"read_events: table must be a pandas DataFrame or a CSV path, got {type(table).__name__}")


def _steady_state_start(flag, interval, where, ss, ii, ss_doses):
    """How many doses before a dose row its steady state adds (0 without ``SS``)."""
    if flag == 0:
        return 0
    if flag != 1:
        raise ValueError(f"{where}, column {ss!r}: SS {flag:g} is not supported (0: no steady state, 1: steady state "
                         "on the unit's first dose)")
    if not interval > 0:
        raise ValueError(f"{where}, column {ii!r}: a steady-state dose (SS 1) needs a positive dosing interval II, got "
                         f"{interval:g} (a steady-state constant infusion, II 0, is not supported)")
    return int(ss_doses)


def _check_steady_state_first(doses, source, ss):
    """A steady-state dose must come first in its unit (SS 1 resets the compartments, which a list of doses
    cannot express after earlier ones).  ``doses``: ``(time, amount, cmt, rate, row, SS row's time or None)``."""
    for d in doses:
        if d[5] is not None and any(e[4] != d[4] and e[0] < d[5] for e in doses):
            raise ValueError(f"read_events: {source}, row {d[4]}, column {ss!r}: a steady-state dose (SS 1) is "
                             "supported only as its unit's first dose (it resets the compartments)")


def read_events(table, id="ID", time="TIME", dv="DV", amt="AMT", evid="EVID", mdv="MDV", cmt="CMT", rate="RATE",
                cens="CENS", addl="ADDL", ii="II", ss="SS", covariates=(), ss_doses=40, dtype=torch.float64):
    """Read a NONMEM / nlmixr2-style event table: one row per observation or dose, a unit id column.

    Rows with ``EVID`` 0 are observations (skipped when ``MDV`` is 1 or ``DV`` is missing: ``"."``, empty or
    ``NA``); ``EVID`` 1 rows are doses of ``AMT`` into compartment ``CMT`` (1-based, default 1), a bolus unless
    ``RATE`` > 0 (an infusion of duration ``AMT / RATE``) or ``RATE`` is -1 or -2: an infusion whose rate (-1)
    or duration (-2) is a model parameter, NONMEM's ``R<n>`` / ``D<n>``, kept as that code in the schedule's
    ``rate`` (:class:`~pyro_node_uq.models.GreyBoxNODEModel` with ``dose_parameters`` such as ``"D1"`` infers
    it, ``n`` counting the model's states from the observed central compartment, so a depot dose's duration is
    ``D2`` whatever its ``CMT``: :mod:`~pyro_node_uq.models.dose_parameters`; a pure NODE refuses it).  ``EVID`` 2 rows (other events) are ignored.  Without
    an ``EVID`` column a row with ``AMT`` > 0 is a dose.  A dose row with ``ADDL`` = n > 0 stands for n more
    doses, every ``II`` time units after it (NONMEM's additional doses).  A steady-state dose (``SS`` 1 with
    ``II`` > 0, a bolus or an infusion, on a unit's first dose row) stands for the same dose every ``II`` time
    units since long before it: ``ss_doses`` earlier doses are added, which reaches steady state to within
    ``exp(-ss_doses II / tau)`` for the slowest time constant ``tau`` of the system (40 intervals: 5e-6 when
    ``tau`` is 3.3 intervals, a half-life of 2.3); a modelled infusion may be one (every added dose is modelled
    by the same parameter).  Other steady-state forms (``SS`` 2, ``SS`` 1 after earlier doses, or with ``II`` 0),
    other negative rates and ``RATE`` -1 / -2 on a row that is not a dose or without a positive ``AMT`` are
    refused by row and column.
    ``CENS`` (or the name given) = 1 marks an observation
    below the quantification limit, its ``DV`` being the limit.  Covariates are per unit: the first non-missing
    value of each unit.  Rows are sorted by time within each unit; units keep their first-appearance order.
    Every row needs a unit id, and all observations one compartment (``CMT``): a row that breaks either is
    refused by row and column, never read as a new unit or a silently moved compartment.

    :param table: a pandas ``DataFrame`` or the path of a CSV file.
    :param str id, time, dv, amt, evid, mdv, cmt, rate, cens, addl, ii, ss: column names (all but the first
        three may be absent).
    :param covariates: names of covariate columns (each once).
    :param int ss_doses: doses added before a steady-state dose (see above).
    :param torch.dtype dtype: floating dtype of the result.
    :returns: :class:`~pyro_node_uq.data.Units`: observations on the union grid of observation times, with
        ``mask``, a :class:`~pyro_node_uq.distributions.DoseSchedule` (``None`` without doses) and covariates; ``ids`` are the unit ids when they
        are integers, else 0..N-1 (``Units.covariate_names`` lists the covariates; ``Units.obs_cmt`` is the
        0-based compartment of the observations when they all name the same one).
    :raises ValueError: naming the row and column of anything it cannot read; naming the file when it is empty,
        binary or not a CSV table.

    Example::

        >>> import pandas as pd
        >>> frame = pd.DataFrame({"ID": [1, 1, 1, 2, 2], "TIME": [0, 1, 2, 0, 1.5],
        ...                       "DV": [".", 5.0, 3.1, ".", 4.0], "AMT": [100, 0, 0, 80, 0],
        ...                       "EVID": [1, 0, 0, 1, 0], "WT": [70, 70, 70, 60, 60]})
        >>> units = read_events(frame, covariates=["WT"])
        >>> units.t.tolist(), units.mask.tolist(), units.doses.amount.tolist(), units.covariates.tolist()
        ([1.0, 1.5, 2.0], [[True, False, True], [False, True, False]], [[100.0], [80.0]], [[70.0], [60.0]])
    """
    covariates = (covariates,) if isinstance(covariates, str) else tuple(covariates)
    repeated = sorted({c for c in covariates if covariates.count(c) > 1})
    if repeated:
        raise ValueError(f"read_events: covariates: {repeated} named more than once in {list(covariates)}; name each "
                         "covariate column once")
    tab = _load(table)
    for column, argument in ((id, "id"), (time, "time"), (dv, "dv")):
        tab.require(column, argument)
    for column in covariates:
        tab.require(column, "covariates")
    if not tab.has(evid) and not tab.has(amt):
        raise ValueError(f"read_events: {tab.source} has neither an EVID column ({evid!r}) nor an AMT column "
                         f"({amt!r}): cannot tell doses from observations")
    ids = [str(v).strip() for v in tab.frame[id].tolist()]
    for row, unit in enumerate(ids, start=1):
        if unit in _MISSING:
            raise ValueError(f"read_events: {tab.source}, row {row}, column {id!r}: missing unit id (every row needs "
                             "the id of its unit)")
    times, values = tab.numbers(time), tab.numbers(dv, missing_ok=True)
    amounts = tab.numbers(amt, missing_ok=True, default=0.0)
    events = tab.numbers(evid, default=None) if tab.has(evid) else [1.0 if (a or 0) > 0 else 0.0 for a in amounts]
    skip = tab.numbers(mdv, missing_ok=True, default=0.0)
    comps, rates = tab.numbers(cmt, missing_ok=True, default=1.0), tab.numbers(rate, missing_ok=True, default=0.0)
    flags = tab.numbers(cens, missing_ok=True, default=0.0)
    extra, every = tab.numbers(addl, missing_ok=True, default=0.0), tab.numbers(ii, missing_ok=True, default=0.0)
    steady = tab.numbers(ss, missing_ok=True, default=0.0)
    units = list(dict.fromkeys(ids))
    obs, doses = {u: {} for u in units}, {u: [] for u in units}
    seen_cmt = {}  # compartment -> first row observing it
    for i, unit in enumerate(ids):
        row = i + 1
        where = f"read_events: {tab.source}, row {row}"
        if events[i] == 1:
            if amounts[i] is None or amounts[i] <= 0:
                what = f"a modelled infusion (RATE {rates[i]:g})" if (rates[i] or 0) < 0 else "a dose (EVID 1)"
                raise ValueError(f"{where}, column {amt!r}: {what} needs a positive amount, got {amounts[i]}")
            if (rates[i] or 0) < 0 and rates[i] not in (MODELLED_RATE, MODELLED_DURATION):
                raise ValueError(f"{where}, column {rate!r}: RATE {rates[i]:g} is not supported; give the infusion "
                                 "rate (> 0), 0 for a bolus, -1 for a modelled rate or -2 for a modelled duration")
            if comps[i] is None or comps[i] < 1 or comps[i] != int(comps[i]):
                raise ValueError(f"{where}, column {cmt!r}: expected a 1-based compartment number, got {comps[i]}")
            start = _steady_state_start(steady[i] or 0, every[i] or 0.0, where, ss, ii, ss_doses)
            n_more = extra[i] or 0
            if n_more < 0 or n_more != int(n_more):
                raise ValueError(f"{where}, column {addl!r}: expected a whole number of additional doses, got "
                                 f"{n_more:g}")
            if n_more and not (every[i] or 0) > 0:
                raise ValueError(f"{where}, column {ii!r}: ADDL {n_more:g} needs a positive dosing interval II, got "
                                 f"{every[i]}")
            for k in range(-start, int(n_more) + 1):
                doses[unit].append((times[i] + k * (every[i] or 0.0), amounts[i], int(comps[i]) - 1, rates[i] or 0.0,
                                    row, times[i] if start else None))
        elif events[i] == 0:
            if rates[i] in (MODELLED_RATE, MODELLED_DURATION):
                raise ValueError(f"{where}, column {rate!r}: RATE {rates[i]:g} (a modelled infusion) on a row that is "
                                 f"not a dose (EVID 0" + ("" if tab.has(evid) else f", {amt!r} not positive") +
                                 "); give RATE 0 or '.' on observation rows")
            if (skip[i] or 0) == 1 or values[i] is None:
                continue
            if times[i] in obs[unit]:
                raise ValueError(f"{where}, column {time!r}: unit {unit!r} has two observations at time "
                                 f"{times[i]:g} (rows {obs[unit][times[i]][2]} and {row})")
            obs[unit][times[i]] = (values[i], (flags[i] or 0) == 1, row)
            if tab.has(cmt) and comps[i] is not None:
                seen_cmt.setdefault(comps[i], row)
                if len(seen_cmt) > 1:
                    other, at = next((c, r) for c, r in seen_cmt.items() if c != comps[i])
                    raise ValueError(f"{where}, column {cmt!r}: an observation of compartment {comps[i]:g}, but row "
                                     f"{at} observes compartment {other:g}; one observed compartment is supported "
                                     "(drop the other compartment's observation rows or set their MDV to 1)")
        elif events[i] != 2:
            raise ValueError(f"{where}, column {evid!r}: EVID {events[i]:g} is not supported (0 observation, 1 dose, "
                             "2 other event)")
    grid = sorted({t for u in units for t in obs[u]})
    if not grid:
        raise ValueError(f"read_events: {tab.source} has no observations (EVID 0 rows with a value in {dv!r})")
    col = {t: j for j, t in enumerate(grid)}
    N, T = len(units), len(grid)
    y = torch.zeros(N, T, 1, dtype=dtype)
    mask, censored = torch.zeros(N, T, dtype=torch.bool), torch.zeros(N, T, dtype=torch.bool)
    for n, unit in enumerate(units):
        for t, (value, below, _) in obs[unit].items():
            y[n, col[t], 0], mask[n, col[t]], censored[n, col[t]] = value, True, below
    for unit in units:
        _check_steady_state_first(doses[unit], tab.source, ss)
    given = [sorted(d[:4] for d in doses[u]) for u in units]
    schedule = None
    if any(given):
        schedule = DoseSchedule.from_lists(*([[d[j] for d in g] for g in given] for j in range(4)), dtype=dtype)
    cov = None
    if covariates:
        cov = torch.zeros(N, len(covariates), dtype=dtype)
        for c, name in enumerate(covariates):
            column = tab.numbers(name, missing_ok=True)
            for n, unit in enumerate(units):
                found = [v for u, v in zip(ids, column) if u == unit and v is not None]
                if not found:
                    raise ValueError(f"read_events: {tab.source}, column {name!r}: unit {unit!r} has no value")
                cov[n, c] = found[0]
    try:
        unit_ids = torch.tensor([int(u) for u in units])
    except ValueError:
        unit_ids = torch.arange(N)
    for c in seen_cmt:  # noqa: PLC0206
        if c < 1 or c != int(c):
            raise ValueError(f"read_events: {tab.source}, row {seen_cmt[c]}, column {cmt!r}: expected a 1-based "
                             f"compartment number, got {c:g}")
    return Units(t=torch.tensor(grid, dtype=dtype), x=None, y=y, mask=mask, ids=unit_ids, doses=schedule,
                 covariates=cov, covariate_names=covariates, censored=censored if censored.any() else None,
                 obs_cmt=int(next(iter(seen_cmt))) - 1 if seen_cmt else None)
