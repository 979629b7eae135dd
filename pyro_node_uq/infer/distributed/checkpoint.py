"""Checkpoints of an SVI fit (parameters, optimiser state, step, RNG states), written atomically by rank 0.

A checkpoint holds plain data only (tensors, numbers, strings, lists and dicts) and is read with
``torch.load(..., weights_only=True)``: a file given as a checkpoint can never run code (a pickle payload is
refused before anything in it is executed).  It records what it was fitted on (a fingerprint of the training
data, the model's and the guide's types and the caller's settings) and a resume with anything else is refused by
name.
"""
import contextlib
import hashlib
import os

import numpy as np
import pyro
import torch
from pyro import poutine

from ...utils.persist import SaveBusy, atomic_save, lock_path, locked
from .process import broadcast_object, is_main_process, rng_state, set_rng_state

__all__ = ["SVICheckpoint", "data_fingerprint"]

_FORMAT, _VERSION = "pyro-node-uq svi checkpoint", 2
_KEYS = ("step", "losses", "params", "optim", "rng", "skipped", "config")


def data_fingerprint(*values):
    """SHA-256 (hex, 16 digits) of the values a fit sees: every tensor's dtype, shape and bytes, and ``repr`` of
    anything else (nested lists, tuples and dicts followed)."""
    h = hashlib.sha256()

    def add(v):
        if torch.is_tensor(v):
            v = v.detach().cpu().contiguous()
            h.update(f"tensor {v.dtype} {tuple(v.shape)}".encode())
            h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
        elif isinstance(v, dict):
            for key in sorted(v, key=str):
                h.update(f"key {key!r}".encode())
                add(v[key])
        elif isinstance(v, (list, tuple)):
            h.update(f"seq {len(v)}".encode())
            for item in v:
                add(item)
        else:
            h.update(f"value {v!r}".encode())

    add(list(values))
    return h.hexdigest()[:16]


def _digest(state):
    """Checksum of a checkpoint's content (everything but the checksum itself)."""
    return data_fingerprint({k: v for k, v in state.items() if k != "digest"})


def _plain_rng(state):
    """Pyro's RNG state with NumPy's ``(name, keys, pos, has_gauss, cached)`` as plain Python values."""
    state = dict(state)
    name, keys, pos, has_gauss, cached = state["numpy"]
    state["numpy"] = (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                      float(cached))
    return state


def _numpy_rng(state):
    state = dict(state)
    name, keys, pos, has_gauss, cached = state["numpy"]
    state["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    return state


class SVICheckpoint:
    """Save an SVI fit every ``every`` steps to ``path`` and resume a restarted fit from it.

    A checkpoint holds the Pyro param store's values, the optimiser state (learning-rate decay included), the
    number of steps taken, the loss history, the skip counter of :class:`~pyro_node_uq.infer.GuardedSVI`, the RNG
    states and the minibatch generator of :class:`~pyro_node_uq.infer.distributed.DataParallelSVI`; resuming
    continues the run bit for bit, and resuming a finished fit gives the same parameters and outputs.  Only rank 0
    writes (into a temporary file renamed over ``path``, so a run killed while saving leaves the previous
    checkpoint intact); on resume rank 0 reads the file and broadcasts it, so the other machines need no shared
    file system.  While a fit runs it holds a lock on ``path``: a second fit with the same checkpoint is refused.

    The file is plain data read with ``weights_only=True``; a file that is not such a checkpoint (another torch
    file, a pickle, a truncated save) is refused with a message and never overwritten.

    :param path: the checkpoint file (``None``: do nothing).
    :param int every: steps between checkpoints (the last step is always saved).
    :param dict config: the settings a resumed run must share with the saved one (checked on resume, by name):
        plain values (numbers, strings, tuples...).
    """

    def __init__(self, path, every=100, config=None):
        if path is not None and not int(every) >= 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {every}")
        self.path, self.every, self.config = (None if path is None else os.fspath(path)), int(every), config or {}

    @contextlib.contextmanager
    def hold(self):
        """Hold the checkpoint's lock on rank 0 for the block (every rank raises :class:`SaveBusy` if another
        process holds it)."""
        if self.path is None:
            yield
            return
        with contextlib.ExitStack() as stack:
            error = None
            if is_main_process():
                try:
                    stack.enter_context(locked(lock_path(self.path), f"checkpoint {self.path!r}"))
                except SaveBusy as e:
                    error = f"{e} (another fit is writing this checkpoint)"
            error = broadcast_object(error)
            if error:
                raise SaveBusy(error)
            yield

    def read(self):
        """The checkpoint's state as saved, or ``None`` when there is no file; rank 0 only.

        :raises ValueError: the file is not a readable checkpoint of this package (names the file and why).
        """
        if not os.path.exists(self.path):
            return None
        where = f"checkpoint {self.path!r}"
        if not os.path.isfile(self.path):
            raise ValueError(f"{where}: not a file")
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a pickle payload, another format, a truncated file: never executed, refused  # noqa: BLE001
            first = (str(e).strip().splitlines() or [""])[0]
            raise ValueError(f"{where}: cannot be read as a pyro-node-uq checkpoint (not one, written by an older "
                             f"version, or corrupt; only plain tensors and values are loaded): {type(e).__name__}: "
                             f"{first}"[:500] + "; it is left as it is: give another --checkpoint path or delete "
                             "it to start afresh") from None
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{where}: a torch file, but not a pyro-node-uq SVI checkpoint; it is left as it is: "
                             "give another checkpoint path")
        if state.get("version") != _VERSION or any(k not in state for k in _KEYS):
            raise ValueError(f"{where}: checkpoint format version {state.get('version')!r} (this version reads "
                             f"{_VERSION}) or incomplete; delete it to start afresh")
        if state.get("digest") != _digest(state):
            raise ValueError(f"{where}: checksum mismatch (the file was changed or corrupted after it was written); "
                             "delete it to start afresh")
        return state

    def resume(self, svi, *args, **kwargs):
        """Restore ``svi`` (and the global param store / RNG) from the checkpoint if one exists.

        The guide and the model are first run once on the fit's arguments ``args, kwargs`` (the training data), so
        that every parameter exists with its constraint exactly as in a fresh fit; then the saved values are
        copied in.  Parameters that differ in name, shape or dtype from this run's are refused by name.

        :returns: ``(steps_taken, losses)``; ``(0, [])`` when there is nothing to resume.
        :raises ValueError: an unreadable file, or one written with other settings, data, model or guide.
        """
        if self.path is None:
            return 0, []
        state = None
        if is_main_process():
            try:
                state = self.read()
            except ValueError as e:  # every rank must hear of it, or the others would wait for the broadcast
                state = str(e)
        state = broadcast_object(state)
        if isinstance(state, str):
            raise ValueError(state)  # noqa: TRY004
        if state is None:
            return 0, []
        saved = state["config"]
        for key, value in self.config.items():
            if saved.get(key) != value:
                what = {"data": "the training data (fingerprint)"}.get(key, key)
                raise ValueError(f"checkpoint {self.path!r} was written with {what}={saved.get(key)!r}, this run has "
                                 f"{what}={value!r}; use another checkpoint path or the same settings")
        self._prime(svi, args, kwargs)
        self._restore_params(state["params"])
        svi.optim.set_state(state["optim"])
        set_rng_state(_numpy_rng(state["rng"]))
        if state.get("minibatch_rng") is not None and hasattr(svi, "generator"):
            svi.generator.set_state(state["minibatch_rng"])
            svi.num_steps_taken = state["step"]
        svi.skipped = state["skipped"]
        return state["step"], list(state["losses"])

    @staticmethod
    def _prime(svi, args, kwargs):
        """Create every parameter as a fresh fit's first step would (the RNG is restored afterwards)."""
        guide_trace = poutine.block(poutine.trace(svi.guide).get_trace)(*args, **kwargs)
        poutine.block(poutine.trace(poutine.replay(svi.model, trace=guide_trace)).get_trace)(*args, **kwargs)
        if hasattr(svi, "_indices"):
            svi._indices = None

    def _restore_params(self, saved):
        live = dict(pyro.get_param_store().named_parameters())
        missing, extra = sorted(set(live) - set(saved)), sorted(set(saved) - set(live))
        if missing or extra:
            raise ValueError(f"checkpoint {self.path!r} holds the parameters of another model or guide: this run has "
                             f"{missing[:5]} that it lacks, it has {extra[:5]} that this run lacks; use another "
                             "checkpoint path")
        for name, param in live.items():
            value = saved[name]
            if not torch.is_tensor(value) or value.shape != param.shape or value.dtype != param.dtype:
                found = f"{value.dtype} {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
                raise ValueError(f"checkpoint {self.path!r}: parameter {name!r} is {found} there, "
                                 f"{param.dtype} {tuple(param.shape)} in this run; use another checkpoint path")
        with torch.no_grad():
            for name, param in live.items():
                param.copy_(saved[name])

    def after_step(self, svi, step, losses, last=False):
        """Save after step ``step`` (0-based) when it is due; rank 0 only."""
        if self.path is None or not is_main_process() or not (last or (step + 1) % self.every == 0):
            return
        params = {name: p.detach().clone() for name, p in pyro.get_param_store().named_parameters()}
        state = {"format": _FORMAT, "version": _VERSION, "step": step + 1, "losses": [float(v) for v in losses],
                 "params": params, "optim": svi.optim.get_state(), "rng": _plain_rng(rng_state()),
                 "skipped": int(svi.skipped), "config": self.config,
                 "minibatch_rng": svi.generator.get_state() if hasattr(svi, "generator") else None}
        state["digest"] = _digest(state)
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        atomic_save(self.path, lambda tmp: torch.save(state, tmp))
