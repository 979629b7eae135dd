"""LTAU as a method: an error predictor riding on a MAP fit that recorded its training errors (loss trajectories)
plus a faiss index of the final model's latent features; its predictive is the MAP fit's."""
import time
from dataclasses import replace

from ..infer.ltau import LTAU
from ..utils.seeding import param_scope
from .common import as_process_model, start_from
from .registry import register

__all__ = ["run_ltau"]


@register("ltau", "LTAU error predictor riding on the MAP fit (loss trajectories + faiss neighbours)",
          kind="error", start="map", demo=True)
def run_ltau(model, split, *, warm_start=None, k=10, map_steps=None, seed=0, progress_bar=True, **ltau_options):
    """Fit LTAU's index on a MAP fit's recorded training errors.

    :param model: a :class:`~pyro_node_uq.models.NODEModel`.
    :param split: the training split.
    :param MethodResult warm_start: a MAP fit with ``loss_trajectories`` (``run_map(..., record_errors=True)``);
        fitted here with ``map_steps`` steps when ``None``.
    :param int k: nearest training samples averaged (see :class:`~pyro_node_uq.infer.LTAU`).
    :param int map_steps: MAP steps when ``warm_start`` is ``None`` (default: :func:`run_map`'s).
    :param int seed: seed of that MAP fit.
    :param bool progress_bar: show tqdm bars.
    :param ltau_options: further :class:`~pyro_node_uq.infer.LTAU` options (``index``, ``inputs``...).
    :returns: the MAP fit's :class:`MethodResult` renamed ``"ltau"`` with ``error_predictor`` set (an LTAU, to be
        calibrated by the caller on held-out data if wanted); the index build is added to its cost.
    :raises ValueError: ``warm_start`` recorded no training errors.

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=4)
        >>> res = run_ltau(problem.default_model(), problem.train, map_steps=10, k=3, progress_bar=False)
        >>> res.error_predictor.predict_node(res.model, res.guide, problem.test).mean.shape
        torch.Size([16, 41])
    """
    model = as_process_model(model, split)
    start = start_from("map", warm_start, model, split, seed=seed, progress_bar=progress_bar, num_steps=map_steps,
                       record_errors=True)
    if start.loss_trajectories is None:
        raise ValueError(f"warm_start: the {start.name!r} fit recorded no training errors; fit it with "
                         "run_map(..., record_errors=True)")
    ltau = LTAU(k=k, recorder=start.loss_trajectories, **ltau_options)
    clock = time.perf_counter()
    with param_scope(start.param_state):
        ltau.fit_node(model, start.guide, split)
    seconds = time.perf_counter() - clock
    note = (f"rides on the MAP fit: {seconds:.2f} s extra (index build) on top of MAP's {start.wall_time:.1f} s; no "
            "extra model evaluations beyond one solve for the latent features")
    return replace(start, name="ltau", wall_time=start.wall_time + seconds, num_model_evals=start.num_model_evals + 1,
                   error_predictor=ltau, notes=list(start.notes) + [note])
