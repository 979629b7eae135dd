"""``run_langevin_kernel``: the :class:`LangevinKernel` in ensemble mode as a comparable method, warm-started from
a fitted guide (AutoNormal, AutoLangevin...), every particle an independent chain."""
import operator
import time
from collections import OrderedDict

import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC
from pyro.infer.autoguide import AutoNormal
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import biject_to

from ..counting import CountingModel
from ...validation import check_int
from ..result import MethodResult, param_scope
from .langevin_kernel import LangevinKernel, particles_to_chains

__all__ = ["run_langevin_kernel"]


def _supports(model, split):
    with poutine.block(), torch.no_grad():
        trace = prune_subsample_sites(poutine.trace(model).get_trace(*split.args, **split.kwargs))
    return OrderedDict((name, site["fn"].support) for name, site in trace.iter_stochastic_nodes())


def _normal_variances(guide, names):
    """Diagonal preconditioner from an ``AutoNormal`` fit: its posterior variances in the kernel's flat order
    (sites sorted by name, each flattened)."""
    return torch.cat([operator.attrgetter(name)(guide.scales).detach().reshape(-1) ** 2 for name in sorted(names)])


def run_langevin_kernel(model, split, init, *, drift="exact", guide=None, num_particles=16, num_samples=100,
                        warmup_steps=100, thin=1, adjust=True, hybrid_weight=0.5, preconditioner=None, seed=0,
                        progress_bar=True):
    """Run an ensemble of ``num_particles`` Langevin chains started at draws of a fitted guide.

    :param model: a Pyro model ``model(t, x, y, mask=...)`` (e.g. a :class:`~pyro_node_uq.models.NODEModel`).
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param MethodResult init: a fitted guide-based result (``run_autonormal``, ``run_langevin``...) whose
        posterior draws start the particles; its cost is added to this method's cost.
    :param str drift: ``"exact"``, ``"learned"`` or ``"hybrid"`` (see :class:`LangevinKernel`).
    :param guide: an object with ``score(z)`` for learned/hybrid drift (default: ``init.guide`` when it has one).
    :param int num_particles: particles (independent chains advanced in one vectorised model call per step).
    :param int num_samples: kept draws per particle (before thinning).
    :param int warmup_steps: step-size and preconditioner adaptation steps.
    :param int thin: keep every ``thin``-th draw.
    :param bool adjust: Metropolis adjustment (MALA) or none (ULA).
    :param float hybrid_weight: weight of the exact gradient in hybrid drift.
    :param preconditioner: as :class:`LangevinKernel`; ``None`` picks the guide's reference scale
        (AutoLangevin), the AutoNormal posterior variances, or warm-up adaptation, in that order.
    :param int seed: seed of the initial draws and of the chains.
    :param bool progress_bar: show MCMC's progress bar.
    :rtype: MethodResult (``samples`` ``(num_particles, draws, ...)``; ``sample_stats`` holds the mean
        ``acceptance_rate`` of each particle broadcast over its draws)

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.infer import run_autonormal
        >>> problem = load_problem("chemical", num_train=2)
        >>> model = problem.default_model(R_hidden=(4,))
        >>> fit = run_autonormal(model, problem.train, num_steps=3, map_steps=3, progress_bar=False)
        >>> res = run_langevin_kernel(model, problem.train, fit, num_particles=4, num_samples=3,
        ...                           warmup_steps=2, progress_bar=False)
        >>> res.samples["R.0.bias"].shape
        torch.Size([4, 3, 4])
    """
    if check_int(num_particles, "num_particles") < 2:
        raise ValueError(f"num_particles must be >= 2 (ensemble mode), got {num_particles}")
    check_int(num_samples, "num_samples", 1)
    if init is None or init.guide is None and init.samples is None:
        raise ValueError("init: a fitted MethodResult (with a guide or samples) to start the particles from")
    if int(thin) < 1:
        raise ValueError(f"thin must be >= 1, got {thin}")
    guide = guide if guide is not None else init.guide
    supports = _supports(model, split)
    draws = init.posterior_samples(num_particles, seed=seed, split=split)
    missing = set(supports) - set(draws)
    if missing:
        raise ValueError(f"init: its posterior draws lack the model's latent sites {sorted(missing)}")
    start = {k: biject_to(supports[k]).inv(draws[k].detach()) for k in supports}
    if preconditioner is None:
        with param_scope(init.param_state):
            if getattr(guide, "reference_scale", None) is not None:
                preconditioner = "guide"
            elif isinstance(guide, AutoNormal):
                preconditioner = _normal_variances(guide, supports)
            else:
                preconditioner = "adapt"
    counted = CountingModel(model)
    pyro.set_rng_seed(seed)
    kernel = LangevinKernel(counted, drift=drift, guide=guide, adjust=adjust, hybrid_weight=hybrid_weight,
                            preconditioner=preconditioner, num_particles=num_particles, max_plate_nesting=1)
    seen = {}  # the kernel resets its statistics in cleanup(): keep them as the run goes
    hook = lambda k, params, stage, i: seen.update(k.diagnostics())  # noqa: E731
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, initial_params=start,
                disable_progbar=not progress_bar, hook_fn=hook)
    clock = time.perf_counter()
    with param_scope(init.param_state):  # the guide's score net and scales live in its own param store
        mcmc.run(*split.args, **split.kwargs)
    wall = time.perf_counter() - clock
    samples = particles_to_chains(mcmc.get_samples(group_by_chain=True), num_particles)
    samples = {k: v[:, ::thin].detach() for k, v in samples.items()}
    accept = float(seen.get("acceptance rate", float("nan")))
    D = next(iter(samples.values())).shape[1]
    stats = {"acceptance_rate": torch.full((num_particles, D), accept)}
    return MethodResult(name=f"langevin_kernel_{drift}", model=model, samples=samples,
                        wall_time=wall + init.wall_time, num_model_evals=counted.count + init.num_model_evals,
                        stochastic_dim=int(sum(v[0, 0].numel() for v in samples.values())),
                        param_state=init.param_state, sample_stats=stats)
