"""ODE-net: the SDE-BNN's architecture with deterministic weights, ``dw = (-w + g_phi(t, w)) dt`` (no diffusion, no
KL), fitted by maximum likelihood: the point-estimate baseline of an SDE-BNN comparison."""
import copy

from .registry import register
from .sdebnn import fit_own_guide

__all__ = ["run_odenet"]


@register("odenet", "ODE-net: the SDE-BNN's architecture with deterministic weights, maximum likelihood",
          defaults={"num_steps": 1500}, quick={"num_steps": 300})
def run_odenet(model, split, *, warm_start=None, num_steps=1500, lr=1e-2, batch_size=None, seed=0, progress_bar=True,
               **svi_kwargs):
    """Fit the deterministic-weight twin of an :class:`~pyro_node_uq.models.SDEBNN` (``stochastic=False``).

    Every predictive draw shares the one network (the spread is the observation noise only); the result has no
    ELBO and ``stochastic_dim=0``.

    :param model: an :class:`~pyro_node_uq.models.SDEBNN` (its ``stochastic`` flag is ignored).
    :param split: the training :class:`~pyro_node_uq.data.StaticSplit`.
    :param MethodResult warm_start: an earlier ``odenet`` fit to continue from, or ``None``.
    :param int num_steps: optimisation steps.
    :param float lr: initial learning rate (decays tenfold).
    :param int batch_size: points per step (``None``: all of them).
    :param int seed: seed.
    :param bool progress_bar: show a tqdm bar.
    :param svi_kwargs: passed to :func:`~pyro_node_uq.infer.fit_svi`.
    :raises MethodSkipped: the model is not an SDE-BNN.
    :rtype: MethodResult

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("spirals", num_train=9)
        >>> res = run_odenet(problem.default_model(), problem.train, num_steps=2, progress_bar=False)
        >>> res.predict(problem.test, num_samples=3)["probs"].std(0).max().item(), res.stochastic_dim
        (0.0, 0)
    """
    twin = copy.copy(model)
    twin.stochastic = False
    return fit_own_guide("odenet", twin, split, warm_start=warm_start, num_steps=num_steps, lr=lr,
                         batch_size=batch_size, seed=seed, progress_bar=progress_bar, **svi_kwargs)
