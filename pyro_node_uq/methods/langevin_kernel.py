"""The :class:`~pyro_node_uq.infer.LangevinKernel` in ensemble mode as a method, warm-started from a fitted guide
(AutoNormal, AutoLangevin...), every particle an independent chain."""
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

from ..infer.mcmc import LangevinKernel, particles_to_chains
from ..utils.seeding import param_scope
from ..validation import check_int
from .common import as_process_model, counted, start_from, with_start_cost
from .registry import register
from .result import MethodResult

__all__ = ["run_langevin_kernel"]


def _supports(model, args, kwargs):
    with poutine.block(), torch.no_grad():
        trace = prune_subsample_sites(poutine.trace(model).get_trace(*args, **kwargs))
    return OrderedDict((name, site["fn"].support) for name, site in trace.iter_stochastic_nodes())


def _normal_variances(guide, names):
    """Diagonal preconditioner from an ``AutoNormal`` fit: its posterior variances in the kernel's flat order
    (sites sorted by name, each flattened)."""
    return torch.cat([operator.attrgetter(name)(guide.scales).detach().reshape(-1) ** 2 for name in sorted(names)])


@register("langevin_kernel", "LangevinKernel (MALA, exact drift), particle ensemble from AutoNormal",
          start="autonormal", demo=True,
          defaults={"num_particles": 16, "warmup_steps": 150, "num_samples": 150, "thin": 5},
          quick={"num_particles": 8, "warmup_steps": 30, "num_samples": 30, "thin": 3})
def run_langevin_kernel(model, split, *, warm_start=None, drift="exact", guide=None, num_particles=16,
                        num_samples=150, warmup_steps=150, thin=5, adjust=True, exact_weight=0.5,
                        preconditioner=None, hybrid_weight=None, autonormal_steps=None, map_steps=None, seed=0,
                        progress_bar=True):
    """Run an ensemble of ``num_particles`` Langevin chains started at draws of a fitted guide.

    :param model: a Pyro model ``model(t, x, y, mask=...)`` (e.g. a :class:`~pyro_node_uq.models.NODEModel`).
    :param split: the training :class:`~pyro_node_uq.data.Split`.
    :param MethodResult warm_start: a fitted result (``run_autonormal``, ``run_langevin``...) whose posterior
        draws start the particles; an AutoNormal fit (``autonormal_steps`` after ``map_steps`` of MAP) when
        ``None``.  Its cost is included in this method's.
    :param str drift: ``"exact"``, ``"learned"`` or ``"blend"`` (see :class:`LangevinKernel`).
    :param guide: an object with ``score(z)`` for learned/blended drift (default: the warm start's guide).
    :param int num_particles: particles (independent chains advanced in one vectorised model call per step).
    :param int num_samples: kept draws per particle (before thinning).
    :param int warmup_steps: step-size and preconditioner adaptation steps.
    :param int thin: keep every ``thin``-th draw.
    :param bool adjust: Metropolis adjustment (MALA) or none (ULA).
    :param float exact_weight: weight of the exact gradient in blended drift.
    :param float hybrid_weight: the old name of ``exact_weight`` (a ``FutureWarning``).
    :param preconditioner: as :class:`LangevinKernel`; ``None`` picks the guide's reference scale
        (AutoLangevin), the AutoNormal posterior variances, or warm-up adaptation, in that order.
    :param int autonormal_steps: AutoNormal steps when the warm start is fitted here (default:
        :func:`run_autonormal`'s).
    :param int map_steps: MAP steps of that fit's own warm start.
    :param int seed: seed of the initial draws and of the chains.
    :param bool progress_bar: show MCMC's progress bar.
    :rtype: MethodResult (``samples`` ``(num_particles, draws, ...)``; ``sample_stats`` holds each particle's
        MALA acceptance probability ``acceptance_rate`` and ``diverging`` at each kept draw, ``(num_particles,
        draws)``)

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> from pyro_node_uq.methods import run_autonormal
        >>> problem = load_problem("chemical", num_train=2)
        >>> model = problem.default_model(R_hidden=(4,))
        >>> fit = run_autonormal(model, problem.train, num_steps=3, map_steps=3, progress_bar=False)
        >>> res = run_langevin_kernel(model, problem.train, warm_start=fit, num_particles=4, num_samples=3,
        ...                           warmup_steps=2, thin=1, progress_bar=False)
        >>> res.samples["R.0.bias"].shape
        torch.Size([4, 3, 4])
    """
    if check_int(num_particles, "num_particles") < 2:
        raise ValueError(f"num_particles must be >= 2 (ensemble mode), got {num_particles}")
    check_int(num_samples, "num_samples", 1)
    model = as_process_model(model, split)
    init = start_from("autonormal", warm_start, model, split, seed=seed, progress_bar=progress_bar,
                      num_steps=autonormal_steps, map_steps=map_steps, elbo_particles=0)
    if init.guide is None and init.samples is None:
        raise ValueError("warm_start: a fitted MethodResult (with a guide or samples) to start the particles from")
    if int(thin) < 1:
        raise ValueError(f"thin must be >= 1, got {thin}")
    guide = guide if guide is not None else init.guide
    args, kwargs = model.fit_args(split)
    supports = _supports(model, args, kwargs)
    draws = init.posterior_samples(num_particles, seed=seed, split=split)
    missing = set(supports) - set(draws)
    if missing:
        raise ValueError(f"warm_start: its posterior draws lack the model's latent sites {sorted(missing)}")
    start = {k: biject_to(supports[k]).inv(draws[k].detach()) for k in supports}
    if preconditioner is None:
        with param_scope(init.param_state):
            if getattr(guide, "reference_scale", None) is not None:
                preconditioner = "guide"
            elif isinstance(guide, AutoNormal):
                preconditioner = _normal_variances(guide, supports)
            else:
                preconditioner = "adapt"
    counting = counted(model)
    pyro.set_rng_seed(seed)
    kernel = LangevinKernel(counting, drift=drift, guide=guide, adjust=adjust, exact_weight=exact_weight,
                            hybrid_weight=hybrid_weight,
                            preconditioner=preconditioner, num_particles=num_particles,
                            max_plate_nesting=model.max_plate_nesting)
    rows = []  # per-draw, per-particle statistics of the kept steps (the kernel resets its own in cleanup())

    def hook(k, params, stage, i):
        if stage.startswith("Sample"):
            info = k.last_info
            rows.append((info.accept_prob.clamp(0, 1).detach(), info.divergent.detach()))

    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, initial_params=start,
                disable_progbar=not progress_bar, hook_fn=hook)
    clock = time.perf_counter()
    with param_scope(init.param_state):  # the guide's score net and scales live in its own param store
        mcmc.run(*args, **kwargs)
    wall = time.perf_counter() - clock
    samples = particles_to_chains(mcmc.get_samples(group_by_chain=True), num_particles)
    samples = {k: v[:, ::thin].detach() for k, v in samples.items()}
    accept, divergent = (torch.stack(c, dim=-1)[:, ::thin] for c in zip(*rows))  # (P, kept draws)
    result = MethodResult(name=f"langevin_kernel_{drift}", model=model, samples=samples, wall_time=wall,
                          num_model_evals=counting.count, param_state=init.param_state,
                          stochastic_dim=int(sum(v[0, 0].numel() for v in samples.values())),
                          sample_stats={"acceptance_rate": accept, "diverging": divergent}, train_split=split)
    result.notes.append(f"{num_particles} particles warm-started at {init.name}; mean acceptance "
                        f"{float(accept.mean()):.2f}")
    return with_start_cost(result, init)
