"""Checkpoints of an SVI fit (parameters, optimiser state, step, RNG states), written atomically by rank 0."""
import os

import pyro
import torch

from ..ltau.recorder import atomic_save
from .process import broadcast_object, is_main_process, rng_state, set_rng_state

__all__ = ["SVICheckpoint"]


class SVICheckpoint:
    """Save an SVI fit every ``every`` steps to ``path`` and resume a restarted fit from it.

    A checkpoint holds the Pyro param store, the optimiser state (learning-rate decay included), the number of
    steps taken, the loss history, the skip counter of :class:`~pyro_node_uq.infer.GuardedSVI`, the RNG states and
    the minibatch generator of :class:`~pyro_node_uq.infer.distributed.DataParallelSVI`; resuming continues the
    run bit for bit.  Only rank 0 writes (into a temporary file renamed over ``path``, so a run killed while
    saving leaves the previous checkpoint intact); on resume rank 0 reads the file and broadcasts it, so the other
    machines need no shared file system.

    :param path: the checkpoint file (``None``: do nothing).
    :param int every: steps between checkpoints (the last step is always saved).
    :param dict config: the settings a resumed run must share with the saved one (checked on resume).
    """

    def __init__(self, path, every=100, config=None):
        if path is not None and not int(every) >= 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {every}")
        self.path, self.every, self.config = (None if path is None else os.fspath(path)), int(every), config or {}

    def resume(self, svi):
        """Restore ``svi`` (and the global param store / RNG) from the checkpoint if one exists.

        :returns: ``(steps_taken, losses)``; ``(0, [])`` when there is nothing to resume.
        """
        if self.path is None:
            return 0, []
        state = None
        if is_main_process() and os.path.exists(self.path):
            try:
                state = torch.load(self.path, map_location="cpu", weights_only=False)
            except Exception as e:  # every rank must hear of it, or the others would wait for the broadcast
                state = f"checkpoint {self.path!r}: cannot be read ({e}); delete it to start afresh"
        state = broadcast_object(state)
        if isinstance(state, str):
            raise ValueError(state)
        if state is None:
            return 0, []
        for key, value in self.config.items():
            if state["config"].get(key) != value:
                raise ValueError(f"checkpoint {self.path!r} was written with {key}={state['config'].get(key)!r}, "
                                 f"this run has {key}={value!r}; use another checkpoint path or the same settings")
        pyro.get_param_store().set_state(state["params"])
        svi.optim.set_state(state["optim"])
        set_rng_state(state["rng"])
        if state.get("minibatch_rng") is not None:
            svi.generator.set_state(state["minibatch_rng"])
            svi.num_steps_taken = state["step"]
        svi.skipped = state["skipped"]
        return state["step"], list(state["losses"])

    def after_step(self, svi, step, losses, last=False):
        """Save after step ``step`` (0-based) when it is due; rank 0 only."""
        if self.path is None or not is_main_process() or not (last or (step + 1) % self.every == 0):
            return
        state = {"step": step + 1, "losses": list(losses), "params": pyro.get_param_store().get_state(),
                 "optim": svi.optim.get_state(), "rng": rng_state(), "skipped": svi.skipped, "config": self.config,
                 "minibatch_rng": svi.generator.get_state() if hasattr(svi, "generator") else None}
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        atomic_save(self.path, lambda tmp: torch.save(state, tmp))
