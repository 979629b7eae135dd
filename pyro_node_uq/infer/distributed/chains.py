"""Chains and ensemble members split across processes and gathered on rank 0 into one chain-shaped result."""
import time

import pyro
import torch
import torch.distributed as dist
from pyro.infer import MCMC

from ..mcmc import particles_to_chains
from ..result import MethodResult
from .process import get_rank, get_world_size, local_process

__all__ = ["map_across_ranks", "run_chains", "run_ensemble"]


def map_across_ranks(fn, items):
    """``[fn(item) for item in items]`` with the items shared out to the ranks in contiguous blocks.

    :param fn: called on this rank's items only, inside :func:`local_process` (ranks run different items, so a
        fit inside ``fn`` runs on this process alone).
    :param items: a sequence, the same on every rank.
    :returns: on rank 0 the list of results in the order of ``items``; ``None`` on the other ranks.
    """
    items, world, rank = list(items), get_world_size(), get_rank()
    if len(items) < world:
        raise ValueError(f"map_across_ranks: {len(items)} items cannot be shared by {world} processes")
    bounds = [len(items) * r // world for r in range(world + 1)]
    with local_process():
        results = [fn(item) for item in items[bounds[rank]: bounds[rank + 1]]]
    if world == 1:
        return results
    gathered = [None] * world if rank == 0 else None
    dist.gather_object(results, gathered, dst=0)
    return [r for part in gathered for r in part] if rank == 0 else None


def run_chains(model, kernel_fn, split, num_chains, num_samples, warmup_steps=0, num_particles=1, seed=0,
               progress_bar=False):
    """Independent MCMC runs split across the ranks, gathered on rank 0 as one chain-shaped result.

    Run ``c`` builds ``kernel_fn(model)``, seeds Pyro with ``seed + c`` and runs ``pyro.infer.MCMC`` on ``split``,
    so the draws do not depend on the number of processes.  A kernel advancing ``num_particles`` particles (the
    vectorised :class:`~pyro_node_uq.infer.LangevinKernel`) gives ``num_particles`` chains per run.

    :param model: the Pyro model.
    :param kernel_fn: ``kernel_fn(model) -> MCMCKernel`` (e.g. ``lambda m: LangevinKernel(m, step_size=0.05)``).
    :param split: the :class:`~pyro_node_uq.data.Split` to condition on.
    :param int num_chains: MCMC runs, shared out to the ranks.
    :param int num_samples: kept draws per run; ``warmup_steps``: adaptation steps per run.
    :param int num_particles: particles of the kernel (chains per run).
    :returns: on rank 0 a :class:`~pyro_node_uq.infer.MethodResult` with ``samples`` of shape
        ``(num_chains * num_particles, num_samples, ...)`` (``to_inference_data`` gives it a ``chain`` dim);
        ``None`` on the other ranks.
    """
    def one_run(c):
        pyro.set_rng_seed(seed + c)
        start = time.perf_counter()
        mcmc = MCMC(kernel_fn(model), num_samples=num_samples, warmup_steps=warmup_steps,
                    disable_progbar=not progress_bar)
        mcmc.run(*split.args, **split.kwargs)
        samples = {k: v.detach() for k, v in mcmc.get_samples(group_by_chain=True).items()}
        if num_particles > 1:
            samples = particles_to_chains(samples, num_particles)
        return samples, time.perf_counter() - start

    runs = map_across_ranks(one_run, range(num_chains))
    if runs is None:
        return None
    samples = {k: torch.cat([s[k] for s, _ in runs]) for k in runs[0][0]}
    return MethodResult(name="chains", model=model, samples=samples, wall_time=sum(t for _, t in runs),
                        stochastic_dim=int(sum(v[0, 0].numel() for v in samples.values())),
                        param_state=pyro.get_param_store().get_state(), train_split=split)


def run_ensemble(model, split, num_members, seed=0, **map_options):
    """A deep ensemble of MAP fits (member ``i`` seeded ``seed + i``) split across the ranks.

    :param map_options: passed to :func:`~pyro_node_uq.infer.run_map` (``num_steps``, ``lr``...).
    :returns: on rank 0 a :class:`~pyro_node_uq.infer.MethodResult` whose ``samples`` are ``(num_members, 1, ...)``
        (member ``i`` is chain ``i``); ``None`` on the other ranks.
    """
    from ..baselines import map_values, run_map

    def member(i):
        fit = run_map(model, split, seed=seed + i, **map_options)
        return map_values(fit), fit.wall_time, fit.num_model_evals

    members = map_across_ranks(member, range(num_members))
    if members is None:
        return None
    samples = {k: torch.stack([v[k] for v, _, _ in members])[:, None] for k in members[0][0]}
    return MethodResult(name="ensemble", model=model, samples=samples, wall_time=sum(m[1] for m in members),
                        num_model_evals=sum(m[2] for m in members),
                        stochastic_dim=sum(int(v.numel()) for v in members[0][0].values()), train_split=split)
