"""Scale-out: data-parallel SVI over ``torch.distributed``, minibatches, checkpoints, chains across processes."""
from .process import (broadcast_object, comm_device, get_rank, get_world_size, init_distributed, is_main_process,
                      spawn, sync_rng_state)
from .checkpoint import SVICheckpoint
from .svi import DataParallelSVI, subsample_plate

__all__ = ["DataParallelSVI", "SVICheckpoint", "broadcast_object", "comm_device", "get_rank", "get_world_size", "init_distributed",
           "is_main_process", "spawn", "subsample_plate", "sync_rng_state"]
