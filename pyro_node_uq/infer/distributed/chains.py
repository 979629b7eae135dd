"""Independent jobs (MCMC runs, ensemble members) shared out to the processes and gathered on rank 0."""
import torch.distributed as dist

from .process import get_rank, get_world_size, local_process

__all__ = ["map_across_ranks"]


def map_across_ranks(fn, items):
    """``[fn(item) for item in items]`` with the items shared out to the ranks in contiguous blocks (with fewer
    items than ranks, some ranks run none).

    :param fn: called on this rank's items only, inside :func:`local_process` (ranks run different items, so a
        fit inside ``fn`` runs on this process alone).
    :param items: a sequence, the same on every rank.
    :returns: on rank 0 the list of results in the order of ``items``; ``None`` on the other ranks.
    """
    items, world, rank = list(items), get_world_size(), get_rank()
    if not items:  # fewer items than ranks is fine: the ranks left over run nothing
        raise ValueError(f"map_across_ranks: {len(items)} items cannot be shared by {world} processes")
    bounds = [len(items) * r // world for r in range(world + 1)]
    with local_process():
        results = [fn(item) for item in items[bounds[rank]: bounds[rank + 1]]]
    if world == 1:
        return results
    gathered = [None] * world if rank == 0 else None
    dist.gather_object(results, gathered, dst=0)
    return [r for part in gathered for r in part] if rank == 0 else None
