"""Per-sample loss trajectories: every training sample's error at every epoch, keyed by a stable id.

Two storage modes.  ``"full"`` keeps every recorded value (memory grows with the number of epochs);
``"histogram"`` keeps a streaming histogram per sample on fixed log-spaced bins plus the exact running sum,
so memory is ``num_samples x bins`` however long training runs (values outside the bins land in the end bins).
"""
import os

import torch

from ...utils.persist import SaveError, atomic_save
from ...validation import MAX_SIZE, check_int, check_positive

__all__ = ["LossTrajectoryRecorder", "atomic_save"]


def _as_tensor(value, name, dtype):
    try:
        value = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: expected a tensor or array, got {type(value).__name__}") from e
    if value.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor, got shape {tuple(value.shape)}")
    if dtype == torch.long:  # sample ids: whole numbers only (1.5 must not become sample 1)
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name}: expected integer sample ids, got dtype {value.dtype}")
        if value.is_floating_point():
            bad = ~torch.isfinite(value) | (value != value.round()) | (value.abs() > 2 ** 53)
            if bad.any():
                raise ValueError(f"{name}: expected integer sample ids, got {value[bad][:5].tolist()}")
    return value.to(dtype)


class LossTrajectoryRecorder:
    """Record each training sample's error at every epoch.

    Call :meth:`record` once per epoch (or once per minibatch with that batch's samples) from any training loop.

    :param str mode: ``"full"`` (keep every value) or ``"histogram"`` (bounded memory).
    :param int bins: number of log-spaced histogram bins (``"histogram"`` mode).
    :param error_range: ``(low, high)`` of the histogram bins; default: ``high`` is twice the largest error of the
        first :meth:`record` call and ``low = high * 1e-5``.  Values outside are counted in the end bins.

    Example::

        >>> rec = LossTrajectoryRecorder(mode="histogram", bins=16)
        >>> for epoch in range(3):
        ...     rec.record(torch.tensor([10, 11]), torch.tensor([1.0, 0.5]) / (epoch + 1))
        >>> rec.num_samples, rec.counts(torch.tensor([10])).tolist()
        (2, [3])
    """

    def __init__(self, mode="full", bins=128, error_range=None):
        if mode not in ("full", "histogram"):
            raise ValueError(f"mode must be 'full' or 'histogram', got {mode!r}")
        bins = check_int(bins, "bins", 2, MAX_SIZE)
        if error_range is not None:
            try:
                low, high = (check_positive(v, "error_range") for v in error_range)
            except (TypeError, ValueError):
                low = high = None
            if low is None or not low < high:
                raise ValueError(f"error_range must be (low, high) with 0 < low < high, got {error_range!r}")
        self.mode, self.bins = mode, bins
        self.edges = None if error_range is None else self._log_edges(*error_range)
        self.keys = torch.zeros(0, dtype=torch.long)
        self._row = {}
        self._count = torch.zeros(0, dtype=torch.long)
        self._sum = torch.zeros(0, dtype=torch.float64)
        self._store = torch.zeros(0, 0 if mode == "full" else self.bins)

    def _log_edges(self, low, high):
        return torch.logspace(torch.log10(torch.tensor(float(low))), torch.log10(torch.tensor(float(high))),
                              self.bins + 1, dtype=torch.float64)

    @property
    def num_samples(self):
        return len(self.keys)

    def rows(self, keys, name="keys"):
        """Row of each key; raises ``KeyError`` naming ``name`` for keys never recorded."""
        keys = _as_tensor(keys, name, torch.long).tolist()
        missing = [k for k in keys if k not in self._row]
        if missing:
            raise KeyError(f"{name}: {len(missing)} key(s) were never recorded, e.g. {missing[:5]}")
        return torch.tensor([self._row[k] for k in keys], dtype=torch.long)

    def _add_rows(self, keys):
        new = [k for k in dict.fromkeys(keys.tolist()) if k not in self._row]
        if not new:
            return
        for k in new:
            self._row[k] = len(self._row)
        self.keys = torch.cat([self.keys, torch.tensor(new, dtype=torch.long)])
        self._count = torch.cat([self._count, torch.zeros(len(new), dtype=torch.long)])
        self._sum = torch.cat([self._sum, torch.zeros(len(new), dtype=torch.float64)])
        self._store = torch.cat([self._store, self._store.new_zeros(len(new), self._store.shape[1])])

    def record(self, keys, errors):
        """Log one error per sample for this epoch.

        :param keys: integer ids ``(n,)`` of the samples (unique within the call).
        :param errors: their non-negative errors ``(n,)``.
        """
        keys = _as_tensor(keys, "keys", torch.long)
        errors = _as_tensor(errors, "errors", torch.float64).detach()
        if keys.shape != errors.shape:
            raise ValueError(f"errors: expected shape {tuple(keys.shape)} (one per key), got {tuple(errors.shape)}")
        if len(torch.unique(keys)) != len(keys):
            raise ValueError("keys: each sample may appear only once per record() call")
        if not torch.isfinite(errors).all() or (errors < 0).any():
            raise ValueError("errors: expected finite non-negative errors (did training diverge?)")
        self._add_rows(keys)
        rows = self.rows(keys)
        if self.mode == "full":
            need = int(self._count[rows].max()) + 1 if len(rows) else 0
            if need > self._store.shape[1]:  # grow the epoch axis geometrically
                grow = max(need, 2 * self._store.shape[1]) - self._store.shape[1]
                self._store = torch.cat([self._store, self._store.new_zeros(len(self.keys), grow)], 1)
            self._store[rows, self._count[rows]] = errors.to(self._store.dtype)
        else:
            if self.edges is None:
                high = 2 * float(errors.max()) if float(errors.max()) > 0 else 1.0
                self.edges = self._log_edges(high * 1e-5, high)
            lo, hi = self.edges[0].log(), self.edges[-1].log()  # log-spaced bins: the bin index is arithmetic
            b = ((errors.log() - lo) / (hi - lo) * self.bins).floor().clamp(0, self.bins - 1).long()
            self._store.index_put_((rows, b), torch.ones(len(rows)), accumulate=True)
        self._count[rows] += 1
        self._sum[rows] += errors

    def counts(self, keys):
        """Number of recorded epochs of each key."""
        return self._count[self.rows(keys)]

    def means(self, rows):
        """Exact mean recorded error of each row (any shape of row indices)."""
        return self._sum[rows] / self._count[rows].clamp(min=1)

    def distributions(self, rows):
        """The empirical error distribution of each row as ``(values, weights)``.

        :param rows: row indices of any shape ``S``.
        :returns: values and weights of shape ``S + (L,)``; each row's weights sum to one.
        """
        count = self._count[rows].clamp(min=1).to(torch.float64)
        if self.mode == "full":
            values = self._store[rows].to(torch.float64)
            cols = torch.arange(values.shape[-1])
            weights = (cols < self._count[rows][..., None]).to(torch.float64) / count[..., None]
            return values, weights
        centres = (self.edges[1:] * self.edges[:-1]).sqrt()
        return centres.expand(rows.shape + (self.bins,)), self._store[rows].to(torch.float64) / count[..., None]

    # ------------------------------------------------------------------ persistence
    def state_dict(self):
        full = self.mode == "full"
        store = self._store[:, : int(self._count.max()) if len(self._count) else 0] if full else self._store
        return {"mode": self.mode, "bins": self.bins, "edges": self.edges, "keys": self.keys,
                "count": self._count, "sum": self._sum, "store": store.clone()}

    def load_state_dict(self, state):
        self.mode, self.bins, self.edges = state["mode"], state["bins"], state["edges"]
        self.keys, self._count, self._sum, self._store = state["keys"], state["count"], state["sum"], state["store"]
        self._row = {int(k): i for i, k in enumerate(self.keys)}

    def save(self, path):
        """Save the recorded trajectories to ``path`` (atomically: an existing file survives a failed write)."""
        atomic_save(path, lambda tmp: torch.save(self.state_dict(), tmp))

    @classmethod
    def load(cls, path):
        """Load a recorder written by :meth:`save`."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"path: no recorder file at {os.fspath(path)!r}")
        state = load_torch_file(path, "a loss-trajectory recorder", ("mode", "bins", "edges", "keys", "count",
                                                                     "sum", "store"))
        rec = cls(mode=state["mode"], bins=state["bins"])
        rec.load_state_dict(state)
        return rec


def load_torch_file(path, what, keys):
    """``torch.load`` a dict saved by this package; a truncated, empty or foreign file raises
    :class:`~pyro_node_uq.utils.persist.SaveError` naming the file and what is wrong."""
    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise SaveError(f"{path}: the file is empty (an interrupted save?); expected {what}")
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # zip, pickle and unpickler errors all mean "not a readable save"
        raise SaveError(f"{path}: cannot be read as {what} (truncated, corrupt or another format): "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]) from e
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise SaveError(f"{path}: not {what} (missing {missing})")
    return state
