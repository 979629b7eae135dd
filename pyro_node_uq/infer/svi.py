"""A plain SVI training loop with a progress bar, shared by every guide-based method."""
import math
import time
import warnings
from dataclasses import dataclass, field

import pyro
from pyro.infer import Trace_ELBO
from tqdm.auto import tqdm

from ..validation import check_int, check_positive
from .averaging import TailAverage
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
            checkpoint=None, checkpoint_every=100, plate=None, checkpoint_config=None, average_tail=0.0,
            lr_schedule="geometric"):
    """Optimise ``guide`` (and the model's ``pyro.param`` s) on ``split`` with ``SVI`` and ``ClippedAdam``.

    Under ``torchrun`` (or any initialised ``torch.distributed`` process group) the fit is data-parallel: every
    process fits its shard of the trajectories and all end with the same parameters, equal to a one-process fit
    (see :class:`~pyro_node_uq.infer.distributed.DataParallelSVI` and the page "Running on several processes and
    machines"); only rank 0 shows the progress bar and writes the checkpoint.

    :param model: a Pyro model called as ``model(t, x, y, mask=...)``.
    :param guide: a Pyro guide for ``model``.
    :param split: a :class:`~pyro_node_uq.data.Split` (its ``args`` and ``kwargs`` are passed on).
    :param int num_steps: optimisation steps.
    :param float lr: initial learning rate; decays to ``lr_final`` (default ``lr / 10``) over ``num_steps``.
    :param str lr_schedule: ``"geometric"`` (by the same factor every step) or ``"cosine"`` (along half a cosine:
        near ``lr`` for longer, then faster down to ``lr_final``).
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
    :param float average_tail: end at the uniform mean of the parameters over this last share of the steps run
        (see :class:`~pyro_node_uq.infer.averaging.TailAverage`; ``0``: at the last iterate).  A resumed fit
        averages over the steps run since it resumed.
    :rtype: FitResult
    """
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    lr = check_positive(lr, "lr")
    lr_final = lr / 10 if lr_final is None else check_positive(lr_final, "lr_final")
    clip_norm = check_positive(clip_norm, "clip_norm")
    if lr_schedule not in ("geometric", "cosine"):
        raise ValueError(f"lr_schedule must be 'geometric' or 'cosine', got {lr_schedule!r}")
    lrd = (lr_final / lr) ** (1.0 / num_steps) if lr_schedule == "geometric" else 1.0
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": lrd, "clip_norm": clip_norm})
    lr_at = None if lr_schedule == "geometric" else (
        lambda step: lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * step / num_steps)))
    distributed = get_world_size() > 1 if distributed is None else distributed
    if distributed or subsample_size is not None or checkpoint is not None:
        svi = DataParallelSVI(model, guide, optim, loss or Trace_ELBO(), plate=plate, subsample_size=subsample_size,
                              seed=seed)
    else:
        svi = GuardedSVI(model, guide, optim, loss or Trace_ELBO())
    config = {"num_steps": num_steps, "lr": lr, "lr_final": lr_final, "subsample_size": subsample_size, "seed": seed}
    if lr_schedule != "geometric":  # checkpoints written before the option existed stay resumable
        config["lr_schedule"] = lr_schedule
    average = TailAverage(average_tail) if average_tail else None
    if checkpoint is not None:
        config.update(data=data_fingerprint(split.args, split.kwargs), model=type(model).__qualname__,
                      guide=type(guide).__qualname__, **(checkpoint_config or {}))
    saver = SVICheckpoint(checkpoint, checkpoint_every, config)
    with saver.hold():
        return _fit_loop(svi, saver, guide, split, num_steps, progress_bar, desc, callback, average, lr_at)


def _fit_loop(svi, saver, guide, split, num_steps, progress_bar, desc, callback, average, lr_at):
    first, losses = saver.resume(svi, *split.args, **split.kwargs)
    result = FitResult(guide, losses=losses)
    start = time.perf_counter()
    with tqdm(range(first, num_steps), desc=desc, disable=not (progress_bar and is_main_process()), leave=False,
              initial=first, total=num_steps) as bar:
        for step in bar:
            if lr_at is not None:  # optimisers of params created at this step start at optim_args' lr, = lr_at(0)
                for opt in svi.optim.optim_objs.values():
                    for group in opt.param_groups:
                        group["lr"] = lr_at(step)
            value = svi.step(*split.args, **split.kwargs)
            if not math.isfinite(value):
                raise FloatingPointError(f"{desc}: the loss became {value} at step {step}; lower lr or check the data")
            result.losses.append(value)
            if average is not None:
                average.update()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
            stop = callback is not None and callback(step, value)
            last = stop or step + 1 == num_steps
            if last and average is not None:
                average.load()  # before the last checkpoint, so a resumed finished fit holds the mean
            saver.after_step(svi, step, result.losses, last=last)
            if stop:
                break
    result.wall_time, result.skipped_steps = time.perf_counter() - start, svi.skipped
    if svi.skipped:
        warnings.warn(f"{desc}: {svi.skipped} of {len(result.losses)} steps were skipped for non-finite gradients",
                      RuntimeWarning)
    return result

