"""SDE-BNN: SVI of the model's own posterior path law over its weights (Girsanov KL to the OU prior), the only
method that applies to an :class:`~pyro_node_uq.models.SDEBNN`."""
import copy
import functools

from ..models.protocol import ProcessModel
from ..validation import check_int
from .common import estimate_elbo, fit_guide, with_start_cost
from .registry import MethodSkipped, register

__all__ = ["fit_own_guide", "run_sdebnn"]


@register("sdebnn", "SDE-BNN: SVI of the model's own posterior weight-path law (static problems)",
          defaults={"num_steps": 1500, "num_particles": 8}, quick={"num_steps": 300, "num_particles": 4,
                                                                  "elbo_particles": 16})
def run_sdebnn(model, split, *, warm_start=None, num_steps=1500, lr=1e-2, num_particles=8, batch_size=None, seed=0,
               progress_bar=True, elbo_particles=64, **svi_kwargs):
    """Fit an SDE-BNN's own guide (:meth:`~pyro_node_uq.models.SDEBNN.guide`) with ``Trace_ELBO``.

    The fit trains a copy of ``model`` (its drift network and point-estimated layers are ``pyro.module``
    parameters): the result's ``model`` is that fitted copy, and ``model`` itself is left as it was.

    :param model: an :class:`~pyro_node_uq.models.SDEBNN` (a model with an ``own_guide``).
    :param split: the training :class:`~pyro_node_uq.data.StaticSplit`.
    :param MethodResult warm_start: an earlier ``sdebnn`` fit to continue from (its cost is added), or ``None``.
    :param int num_steps: the most SVI steps; the fit stops earlier when its loss has converged.
    :param float lr: initial learning rate (decays tenfold).
    :param int num_particles: weight paths per step, integrated in one solve.
    :param int batch_size: points per step (minibatches drawn by the guide; ``None``: all of them).
    :param int seed: seed.
    :param bool progress_bar: show a tqdm bar.
    :param int elbo_particles: particles of the final full-data ELBO estimate (0 to skip).
    :param svi_kwargs: passed to :func:`~pyro_node_uq.infer.fit_svi`.
    :raises MethodSkipped: the model brings no guide of its own.
    :rtype: MethodResult

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("gap_regression", num_train=8)
        >>> res = run_sdebnn(problem.default_model(), problem.train, num_steps=2, progress_bar=False)
        >>> res.predict(problem.test, num_samples=3)["y_mean"].shape
        torch.Size([3, 48, 1])
    """
    result = fit_own_guide("sdebnn", model, split, warm_start=warm_start, num_steps=num_steps, lr=lr,
                           num_particles=num_particles, batch_size=batch_size, seed=seed, progress_bar=progress_bar,
                           **svi_kwargs)
    if elbo_particles:
        result.elbo = estimate_elbo(result.model, result.guide, split, elbo_particles, seed)
    return result


def fit_own_guide(name, model, split, *, warm_start=None, batch_size=None, **fit_options):
    """Fit a copy of ``model`` (of ``warm_start.model`` when given) with the model's own guide: the SVI loop of
    :func:`run_sdebnn` and :func:`~pyro_node_uq.methods.odenet.run_odenet`.

    :param str name: the method name.
    :param int batch_size: points per step (``None``: all of them).
    :param fit_options: passed to :func:`~pyro_node_uq.methods.common.fit_guide`.
    :raises MethodSkipped: the model brings no guide of its own.
    """
    if not isinstance(model, ProcessModel) or model.own_guide is None:
        raise MethodSkipped(f"{name}: {type(model).__name__} brings no guide of its own (it is not an SDE-BNN); "
                            "the generic methods apply to it")
    model = copy.deepcopy(model if warm_start is None else warm_start.model)  # the fit trains it in place
    guide = model.own_guide
    if batch_size is not None:
        guide = functools.partial(guide, subsample_size=min(check_int(batch_size, "batch_size", 1), len(split)))
    result = fit_guide(name, model, lambda counting: guide, split,
                       stochastic_dim=lambda g: model.num_weights if model.stochastic else 0, **fit_options)
    result.guide = model.own_guide  # predictions use every point
    return with_start_cost(result, warm_start)
