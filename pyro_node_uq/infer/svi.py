"""A plain SVI training loop with a progress bar, shared by every guide-based method."""
import math
import time
from dataclasses import dataclass, field

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta
from tqdm.auto import tqdm

__all__ = ["FitResult", "fit_svi", "fit_map"]


@dataclass
class FitResult:
    """What a fit returns: the trained guide, the loss history and the wall time in seconds."""

    guide: object
    losses: list = field(default_factory=list)
    wall_time: float = 0.0


def _check_params_finite(desc, step):
    """A finite loss with a NaN gradient still corrupts the parameters: say which one, at which step."""
    for name, value in pyro.get_param_store().items():
        if not torch.isfinite(value).all():
            raise FloatingPointError(f"{desc}: parameter {name!r} became non-finite at step {step} (a NaN or inf "
                                     "gradient); lower lr, or check the model for diverging solves")


def fit_svi(model, guide, split, num_steps=1000, lr=1e-2, lr_final=None, loss=None, clip_norm=10.0,
            progress_bar=True, desc="SVI", callback=None):
    """Optimise ``guide`` (and the model's ``pyro.param`` s) on ``split`` with ``SVI`` and ``ClippedAdam``.

    :param model: a Pyro model called as ``model(t, x, y, mask=...)``.
    :param guide: a Pyro guide for ``model``.
    :param split: a :class:`~pyro_node_uq.data.Split` (its ``args`` and ``kwargs`` are passed on).
    :param int num_steps: optimisation steps.
    :param float lr: initial learning rate; decays geometrically to ``lr_final`` (default ``lr / 10``).
    :param loss: a Pyro ELBO (default ``Trace_ELBO()``).
    :param float clip_norm: gradient-norm clipping of ``ClippedAdam``.
    :param bool progress_bar: show a tqdm bar.
    :param callback: optional ``callback(step, loss)``; return ``True`` to stop early.
    :rtype: FitResult
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    lr_final = lr / 10 if lr_final is None else lr_final
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": (lr_final / lr) ** (1.0 / num_steps), "clip_norm": clip_norm})
    svi = SVI(model, guide, optim, loss or Trace_ELBO())
    result = FitResult(guide)
    start = time.perf_counter()
    with tqdm(range(num_steps), desc=desc, disable=not progress_bar, leave=False) as bar:
        for step in bar:
            value = svi.step(*split.args, **split.kwargs)
            if not math.isfinite(value):
                raise FloatingPointError(f"{desc}: the loss became {value} at step {step}; lower lr or check the data")
            _check_params_finite(desc, step)
            result.losses.append(value)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
            if callback is not None and callback(step, value):
                break
    result.wall_time = time.perf_counter() - start
    return result


def fit_map(model, split, num_steps=1500, lr=2e-2, seed=0, progress_bar=True, clear_param_store=True, **kwargs):
    """MAP estimate of every latent site of ``model`` (``AutoDelta`` via SVI), from a Glorot initialisation.

    :param model: a :class:`~pyro_node_uq.models.NODEModel` (or any model with ``init_loc_fn``).
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param int seed: seed of the initial weights and of Pyro.
    :param bool clear_param_store: start from an empty Pyro param store (default), so that a second fit neither
        resumes from the previous fit's ``AutoDelta`` values nor trips over their shapes; pass ``False`` to keep
        other parameters you have in the store.
    :returns: a :class:`FitResult` whose ``guide`` is the fitted ``AutoDelta``.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> fit = fit_map(problem.default_model(), problem.train, num_steps=5, progress_bar=False)
        >>> len(fit.losses)
        5
    """
    if clear_param_store:
        pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    init = model.init_loc_fn(seed) if hasattr(model, "init_loc_fn") else None
    guide = AutoDelta(model, init_loc_fn=init) if init is not None else AutoDelta(model)
    return fit_svi(model, guide, split, num_steps=num_steps, lr=lr, progress_bar=progress_bar, desc="MAP", **kwargs)
