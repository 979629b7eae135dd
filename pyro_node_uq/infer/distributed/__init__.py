"""Scale-out: data-parallel SVI over ``torch.distributed``, minibatches, checkpoints, chains across processes."""
from .chains import map_across_ranks
from .checkpoint import SVICheckpoint
from .process import (
    barrier,
    broadcast_object,
    comm_device,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    local_process,
    spawn,
    sync_rng_state,
)
from .svi import DataParallelSVI, data_plate, gather_shards, subsample_plate

__all__ = ["DataParallelSVI", "SVICheckpoint", "barrier", "broadcast_object", "comm_device", "data_plate", "gather_shards", "get_rank", "get_world_size",
           "init_distributed", "is_main_process", "local_process", "map_across_ranks",
           "spawn", "subsample_plate", "sync_rng_state"]
