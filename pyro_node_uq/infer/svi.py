"""A plain SVI training loop with a progress bar, shared by every guide-based method."""
import math
import time
import warnings
from dataclasses import dataclass, field

import pyro
from pyro.infer import Trace_ELBO
from tqdm.auto import tqdm

from ..validation import check_int, check_positive
from .distributed import DataParallelSVI, SVICheckpoint, get_world_size, is_main_process
from .distributed.checkpoint import data_fingerprint
from .guarded_svi import GuardedSVI

__all__ = ["FitResult", "GuardedSVI", "fit_svi"]


@dataclass
class FitResult:
    """What a fit returns: the trained guide, the loss history, the wall time in seconds and the number of steps
    skipped for non-finite gradients (see :class:`GuardedSVI`)."""

    guide: object
    losses: list = field(default_factory=list)
    wall_time: float = 0.0
    skipped_steps: int = 0


def fit_svi(model, guide, split, num_steps=1000, lr=1e-2, lr_final=None, loss=None, clip_norm=10.0,
            progress_bar=True, desc="SVI", callback=None, distributed=None, subsample_size=None, seed=0,
            checkpoint=None, checkpoint_every=100, plate=None, checkpoint_config=None, lr_scales=None):
    """Optimise ``guide`` (and the model's ``pyro.param`` s) on ``split`` with ``SVI`` and ``ClippedAdam``.

    Under ``torchrun`` (or any initialised ``torch.distributed`` process group) the fit is data-parallel: every
    process fits its shard of the trajectories and all end with the same parameters, equal to a one-process fit
    (see :class:`~pyro_node_uq.infer.distributed.DataParallelSVI` and the page "Running on several processes and
    machines"); only rank 0 shows the progress bar and writes the checkpoint.

    :param model: a Pyro model called as ``model(t, x, y, mask=...)``.
    :param guide: a Pyro guide for ``model``.
    :param split: a :class:`~pyro_node_uq.data.Split` (its ``args`` and ``kwargs`` are passed on).
    :param int num_steps: optimisation steps.
    :param float lr: initial learning rate; decays geometrically to ``lr_final`` (default ``lr / 10``).
    :param loss: a Pyro ELBO (default ``Trace_ELBO()``).
    :param float clip_norm: gradient-norm clipping of ``ClippedAdam``.
    :param bool progress_bar: show a tqdm bar.
    :param callback: optional ``callback(step, loss)``; return ``True`` to stop early (it runs on every rank with
        the same loss, so it must decide the same on every rank).
    :param bool distributed: data-parallel over the process group; default: when one is initialised.
    :param int subsample_size: trajectories per step (over all processes; ``None``: all), drawn with ``seed``.
    :param int seed: seed of the minibatch draws.
    :param checkpoint: file to save the fit to every ``checkpoint_every`` steps and to resume from when it exists
        (see :class:`~pyro_node_uq.infer.distributed.SVICheckpoint`).
    :param str plate: name of the model's data plate, sharded and subsampled (default: the model's
        ``data_plate``; needed only by a data-parallel, minibatch or checkpointed fit).
    :param dict checkpoint_config: more settings (plain values) a resumed fit must share with the checkpoint,
        besides the fit's own options, a fingerprint of ``split`` and the model's and guide's types.
    :param dict lr_scales: per-parameter multipliers of ``lr`` (and ``lr_final``), by param-store name (Pyro's
        per-parameter optimiser arguments); unnamed parameters keep ``lr``.  For parameters whose natural step is
        far from ``lr`` in their own units, e.g. a guide's
        :meth:`~pyro_node_uq.infer.AutoLangevin.warm_start_lr_scales`.
    :rtype: FitResult
    """
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    lr = check_positive(lr, "lr")
    lr_final = lr / 10 if lr_final is None else check_positive(lr_final, "lr_final")
    clip_norm = check_positive(clip_norm, "clip_norm")
    lr_scales = _check_lr_scales(lr_scales)
    lrd = (lr_final / lr) ** (1.0 / num_steps)

    def optim_args(name):  # Pyro's per-parameter arguments: every parameter decays alike, from its own lr
        return {"lr": lr * lr_scales.get(name, 1.0), "lrd": lrd, "clip_norm": clip_norm}

    optim = pyro.optim.ClippedAdam(optim_args)
    distributed = get_world_size() > 1 if distributed is None else distributed
    if distributed or subsample_size is not None or checkpoint is not None:
        svi = DataParallelSVI(model, guide, optim, loss or Trace_ELBO(), plate=plate, subsample_size=subsample_size,
                              seed=seed)
    else:
        svi = GuardedSVI(model, guide, optim, loss or Trace_ELBO())
    config = {"num_steps": num_steps, "lr": lr, "lr_final": lr_final, "subsample_size": subsample_size, "seed": seed}
    if lr_scales:
        config["lr_scales"] = repr(sorted(lr_scales.items()))
    if checkpoint is not None:
        config.update(data=data_fingerprint(split.args, split.kwargs), model=type(model).__qualname__,
                      guide=type(guide).__qualname__, **(checkpoint_config or {}))
    saver = SVICheckpoint(checkpoint, checkpoint_every, config)
    with saver.hold():
        return _fit_loop(svi, saver, guide, split, num_steps, progress_bar, desc, callback)


def _check_lr_scales(lr_scales):
    """``lr_scales`` as a dict of positive finite floats by parameter name (empty for ``None``)."""
    if lr_scales is None:
        return {}
    if not isinstance(lr_scales, dict):
        raise TypeError(f"lr_scales must be a dict of parameter name -> multiplier, got {type(lr_scales).__name__}")
    return {str(name): check_positive(value, f"lr_scales[{name!r}]") for name, value in lr_scales.items()}


def _fit_loop(svi, saver, guide, split, num_steps, progress_bar, desc, callback):
    first, losses = saver.resume(svi, *split.args, **split.kwargs)
    result = FitResult(guide, losses=losses)
    start = time.perf_counter()
    with tqdm(range(first, num_steps), desc=desc, disable=not (progress_bar and is_main_process()), leave=False,
              initial=first, total=num_steps) as bar:
        for step in bar:
            value = svi.step(*split.args, **split.kwargs)
            if not math.isfinite(value):
                raise FloatingPointError(f"{desc}: the loss became {value} at step {step}; lower lr or check the data")
            result.losses.append(value)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
            stop = callback is not None and callback(step, value)
            saver.after_step(svi, step, result.losses, last=stop or step + 1 == num_steps)
            if stop:
                break
    result.wall_time, result.skipped_steps = time.perf_counter() - start, svi.skipped
    if svi.skipped:
        warnings.warn(f"{desc}: {svi.skipped} of {len(result.losses)} steps were skipped for non-finite gradients",
                      RuntimeWarning)
    return result

