"""The user's own trajectories as a :class:`~pyro_node_uq.data.Problem`: arrays (NumPy or torch) or a
long-format CSV table (one row per unit and time).

Whole units are held out as the ``test`` split by a seeded permutation; an ``extrapolation`` split (each fitted
unit's later observations) is made only when ``time_fraction`` is given.  The recommended model learns its noise
scale (real data have no known noise level) and starts from a learned initial state, or from one computed from
the inputs at the first time when there are inputs.
"""
import math
from pathlib import Path

import numpy as np
import torch

from .events import _MISSING, _Table, read_csv_text
from .problem import Problem, Split
from .units import Units, _forecast_split, split_units

__all__ = ["read_trajectories", "trajectories_problem"]


def _tensor(value, name, dtype, dims):
    """``value`` (array-like of numbers) as a ``dtype`` tensor with one of the numbers of dims in ``dims``."""
    if value is None:
        return None
    try:
        array = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
        out = torch.as_tensor(array.astype(np.float64), dtype=torch.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected an array of numbers, got {type(value).__name__} ({e})") from None
    if out.dim() not in dims:
        raise ValueError(f"{name}: expected {' or '.join(f'{d}-D' for d in dims)} values, got shape "
                         f"{tuple(out.shape)}")
    return out.to(dtype)


def _names(names, count, stem, what):
    if names is None:
        return (stem,) if count == 1 else tuple(f"{stem}{i}" for i in range(count))
    names = (names,) if isinstance(names, str) else tuple(str(n) for n in names)
    if len(names) != count:
        raise ValueError(f"{what}: {len(names)} names {list(names)} for {count} columns of data")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: names must differ, got {list(names)}")
    return names


def _plain(split):
    return None if split is None else Split(t=split.t, x=split.x, y=split.y, mask=split.mask, ids=split.ids)


def trajectories_problem(t, y, x=None, mask=None, ids=None, obs_names=None, input_names=None, test_fraction=0.25,
                         time_fraction=None, seed=0, name="user_data", description=None, time_unit="", dtype=None):
    """A :class:`~pyro_node_uq.data.Problem` from arrays of trajectories on shared times.

    :param t: observation times ``(T,)``, strictly increasing.
    :param y: observations ``(N, T, outputs)``, or ``(N, T)`` for one output; NaN marks an unobserved entry.
    :param x: inputs ``(N, T, inputs)`` or ``(N, T)`` at the times ``t``, or ``None``.
    :param mask: boolean ``(N, T)`` of observed points (default: where ``y`` is not NaN).
    :param ids: integer id of each unit (default ``0..N-1``).
    :param obs_names, input_names: names of the outputs and inputs (default ``y``/``y0, y1...``, ``x``...).
    :param float test_fraction: fraction of the units held out as the ``test`` split (at least one unit on
        each side).
    :param float time_fraction: when given, the fitted units' first ``time_fraction`` of observations train and
        their later ones form the ``extrapolation`` split; ``None`` (default): no extrapolation split.
    :param int seed: seed of the unit split.
    :param str name, description, time_unit: of the problem.
    :param torch.dtype dtype: dtype of the data (default ``torch.get_default_dtype()``, the dtype the models'
        weights get; NumPy's float64 arrays are converted).
    :rtype: ~pyro_node_uq.data.Problem

    Example::

        >>> import numpy as np
        >>> t = np.linspace(0.0, 1.0, 5)
        >>> y = np.stack([np.exp(-k * t) for k in (0.5, 1.0, 1.5, 2.0)])   # 4 units, one output, float64
        >>> p = trajectories_problem(t, y, obs_names=["conc"])
        >>> len(p.train), len(p.test), p.extrapolation, p.train.y.dtype == torch.get_default_dtype()
        (3, 1, None, True)
        >>> p.model_kwargs["scale"]
        'learned'
    """
    dtype = dtype or torch.get_default_dtype()
    t, y, x = _tensor(t, "t", dtype, (1,)), _tensor(y, "y", dtype, (2, 3)), _tensor(x, "x", dtype, (2, 3))
    y = y[..., None] if y.dim() == 2 else y
    x = x[..., None] if x is not None and x.dim() == 2 else x
    N, T = y.shape[:2]
    if t.shape[0] != T:
        raise ValueError(f"y: {T} times per unit but t has {t.shape[0]}")
    if x is not None and x.shape[:2] != (N, T):
        raise ValueError(f"x: expected {N} units and {T} times like y, got shape {tuple(x.shape)}")
    observed = ~torch.isnan(y).all(-1)
    if mask is not None:
        mask = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
        if mask.dtype != torch.bool or mask.shape != (N, T):
            raise ValueError(f"mask: expected a boolean array of shape ({N}, {T}), got {mask.dtype} "
                             f"{tuple(mask.shape)}")
        observed = observed & mask
    if torch.isnan(y[observed]).any():
        raise ValueError("y: an observed point has NaN in some outputs but not all; give a mask per point")
    empty = [i for i in range(N) if not observed[i].any()]
    if empty:
        raise ValueError(f"y: units {empty} have no observations")
    ids = torch.arange(N) if ids is None else torch.as_tensor(np.asarray(ids) if not torch.is_tensor(ids) else ids)
    if ids.shape != (N,) or ids.is_floating_point() or len(set(ids.tolist())) != N:
        raise ValueError(f"ids: expected {N} distinct integer ids, got {ids.tolist()}")
    obs_names = _names(obs_names, y.shape[-1], "y", "obs_names")
    input_names = _names(input_names, x.shape[-1], "x", "input_names") if x is not None else ()
    if N < 2:
        raise ValueError(f"y: {N} unit; holding out test units needs at least 2 (1 to fit, 1 to test)")
    units = Units(t=t, x=x, y=torch.where(observed[..., None], y, torch.zeros_like(y)), ids=ids,
                  mask=None if bool(observed.all()) else observed)
    fitted, test = split_units(units, test_fraction, seed)
    train, extrapolation = _forecast_split(fitted, time_fraction)
    observed_y = y[observed]
    spread = float(observed_y.std()) if observed_y.numel() > 1 else 0.0
    inputs = x is not None
    model_kwargs = {"hidden_dim": len(obs_names) + 2, "R_hidden": (32,), "Z_hidden": None, "scale": "learned",
                        "scale_init": 0.1 * spread if spread > 0 and math.isfinite(spread) else 0.1,
                        "init": "input" if inputs else "learned",
                        "prior_scale": {"H0.*" if inputs else "h0": 5.0, "*": 1.0}}
    text = description or (f"{N} trajectories of {', '.join(obs_names)}"
                           + (f" driven by {', '.join(input_names)}" if inputs else "") + f" at {T} times (user data)")
    return Problem(name=name, description=text, train=_plain(train), test=_plain(test),
                   extrapolation=_plain(extrapolation), obs_names=obs_names, input_names=input_names,
                   time_unit=time_unit, model_kwargs=model_kwargs)


def read_trajectories(path, unit="unit", time="time", inputs=(), outputs=None, **problem_kwargs):
    """A :class:`~pyro_node_uq.data.Problem` from a long-format CSV table: one row per unit and time, a column
    for the unit id, one for the time, one per input and one per output (an empty, ``.`` or ``NA`` output is
    unobserved).

    Units observed at different times share the union of their times (a mask marks each unit's own); with
    inputs every unit needs a row at every time (the solver interpolates the inputs).

    :param path: the CSV file, or a pandas ``DataFrame``.
    :param str unit, time: the id and time column names.
    :param inputs: input column names.
    :param outputs: output column names (default: every other column).
    :param problem_kwargs: passed to :func:`trajectories_problem` (``test_fraction``, ``time_fraction``,
        ``seed``, ``dtype``...).
    :raises ValueError: naming the file, row and column of anything it cannot read.
    :rtype: ~pyro_node_uq.data.Problem

    Example::

        >>> import pandas as pd
        >>> frame = pd.DataFrame({"unit": [1, 1, 2, 2, 3, 3], "time": [0, 1, 0, 1, 0, 2],
        ...                       "conc": [1.0, 0.5, 2.0, 1.1, 1.5, 0.2]})
        >>> p = read_trajectories(frame, outputs=["conc"])
        >>> p.train.t.tolist(), p.obs_names, len(p.train) + len(p.test)
        ([0.0, 1.0, 2.0], ('conc',), 3)
    """
    import pandas as pd

    if isinstance(path, pd.DataFrame):
        tab, stem = _Table(path.reset_index(drop=True), "the table", "read_trajectories"), "user_data"
    else:
        tab, stem = _Table(read_csv_text(path, "read_trajectories"), repr(str(path)), "read_trajectories"), \
            Path(path).stem
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs or ())
    taken = {unit, time, *inputs}
    outputs = tuple(c for c in tab.frame.columns if c not in taken) if outputs is None else (
        (outputs,) if isinstance(outputs, str) else tuple(outputs))
    columns = [unit, time, *inputs, *outputs]
    for arg, column in [("unit", unit), ("time", time)] + [("inputs", c) for c in inputs] + \
            [("outputs", c) for c in outputs]:
        tab.require(column, arg)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated or not outputs:
        raise ValueError(f"read_trajectories: {tab.source}: " + (f"columns {repeated} named more than once in "
                         f"unit, time, inputs and outputs" if repeated else "no output columns"))
    ids = [str(v).strip() for v in tab.frame[unit].tolist()]
    for row, u in enumerate(ids, start=1):
        if u in _MISSING:
            raise ValueError(f"read_trajectories: {tab.source}, row {row}, column {unit!r}: missing unit id")
    times = tab.numbers(time)
    ins = [tab.numbers(c) for c in inputs]
    outs = [tab.numbers(c, missing_ok=True) for c in outputs]
    names = list(dict.fromkeys(ids))
    grid = sorted(set(times))
    col, row_of = {v: j for j, v in enumerate(grid)}, {n: i for i, n in enumerate(names)}
    N, T = len(names), len(grid)
    y = np.full((N, T, len(outputs)), np.nan)
    x = np.full((N, T, len(inputs)), np.nan) if inputs else None
    seen = {}
    for r, (u, tv) in enumerate(zip(ids, times)):
        if (u, tv) in seen:
            raise ValueError(f"read_trajectories: {tab.source}, row {r + 1}, column {time!r}: unit {u!r} has two "
                             f"rows at time {tv:g} (rows {seen[(u, tv)]} and {r + 1})")
        seen[(u, tv)] = r + 1
        i, j = row_of[u], col[tv]
        y[i, j] = [np.nan if o[r] is None else o[r] for o in outs]
        if inputs:
            x[i, j] = [v[r] for v in ins]
    if inputs and np.isnan(x).any():
        i, j = (int(v) for v in np.argwhere(np.isnan(x[..., 0]))[0])
        raise ValueError(f"read_trajectories: {tab.source}: unit {names[i]!r} has no row at time {grid[j]:g}; with "
                         "inputs every unit needs a row at every time (the solver interpolates the inputs)")
    try:
        unit_ids = [int(u) for u in names]
    except ValueError:
        unit_ids = None
    problem_kwargs.setdefault("name", stem)
    return trajectories_problem(np.array(grid), y, x, ids=unit_ids, obs_names=outputs, input_names=inputs or None,
                                **problem_kwargs)
