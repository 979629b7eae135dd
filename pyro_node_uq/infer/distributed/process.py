"""The process group: join the one ``torchrun`` describes, ask who we are, and spawn local groups for tests."""
import contextlib
import datetime
import io
import os
import socket

import pyro
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = [
    "barrier",
    "broadcast_object",
    "comm_device",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "local_process",
    "spawn",
    "sync_rng_state",
]


def init_distributed(backend=None, timeout=300.0):
    """Join the process group described by the environment ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``); a no-op when already joined or not launched by torchrun.

    :param str backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else gloo.  With NCCL each
        process uses the GPU ``LOCAL_RANK``.
    :param float timeout: seconds a collective waits for the other processes before failing.
    :returns: ``(rank, world_size)``.
    """
    if dist.is_available() and not dist.is_initialized() and "WORLD_SIZE" in os.environ:
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # noqa: PLW1508
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return get_rank(), get_world_size()


_LOCAL_DEPTH = [0]


def _in_group():
    return _LOCAL_DEPTH[0] == 0 and dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def local_process():
    """Inside this block the process acts alone (rank 0 of 1): fits run locally, without collectives, as the
    independent runs of :func:`~pyro_node_uq.infer.distributed.map_across_ranks` must."""
    _LOCAL_DEPTH[0] += 1
    try:
        yield
    finally:
        _LOCAL_DEPTH[0] -= 1


def get_rank():
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if _in_group() else 0


def get_world_size():
    """The number of processes in the group (1 outside a process group)."""
    return dist.get_world_size() if _in_group() else 1


def is_main_process():
    """True on rank 0, the only rank that writes files and shows progress bars."""
    return get_rank() == 0


def comm_device():
    """The device collectives run on: the current GPU under NCCL, the CPU under gloo (or without a group)."""
    if get_world_size() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier():
    """Wait until every rank of the process group gets here (a no-op without a group, or inside
    :func:`local_process`)."""
    if get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj, src=0):
    """Rank ``src``'s ``obj`` on every rank (picklable objects; returns ``obj`` itself without a group)."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=comm_device())
    return box[0]


def rng_state():
    """Pyro's RNG state (torch, random, numpy) plus every CUDA generator's."""
    state = pyro.util.get_rng_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore a :func:`rng_state`."""
    pyro.util.set_rng_state(state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def sync_rng_state():
    """Give every rank rank 0's RNG state, so all ranks draw the same particles from here on."""
    if get_world_size() > 1:
        set_rng_state(broadcast_object(rng_state()))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, fn, world_size, port, backend, queue, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    init_distributed(backend)
    try:
        buffer = io.BytesIO()  # bytes, not shared-memory tensors: this process exits before the parent reads
        torch.save(fn(*args), buffer)
        queue.put((rank, buffer.getvalue()))
    finally:
        dist.destroy_process_group()


def spawn(fn, world_size, *args, backend="gloo", timeout=120.0):
    """Run ``fn(*args)`` in ``world_size`` fresh local processes joined in one process group (localhost, a free
    port), the way ``torchrun --nproc-per-node world_size`` would; for tests and notebooks.

    :param fn: a picklable (module-level) function; inside it :func:`get_rank` tells the processes apart.
    :param int world_size: number of processes.
    :param str backend: ``"gloo"`` (CPU) or ``"nccl"`` (one GPU per process).
    :param float timeout: seconds after which the processes are killed and :class:`TimeoutError` raised.
    :returns: the list of ``fn``'s return values, by rank.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = mp.start_processes(_worker, (fn, world_size, _free_port(), backend, queue, args), nprocs=world_size,
                               join=False, start_method="spawn")
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    results = {}
    try:
        while len(results) < world_size:
            if not queue.empty():
                rank, value = queue.get()
                results[rank] = torch.load(io.BytesIO(value), weights_only=False)
            elif procs.join(timeout=0.05) and queue.empty():
                break
            if datetime.datetime.now() > deadline:
                raise TimeoutError(f"spawn: {world_size} processes did not finish within {timeout} s")
        while not procs.join(timeout=1.0):
            if datetime.datetime.now() > deadline:
                raise TimeoutError(f"spawn: {world_size} processes did not exit within {timeout} s")
    finally:
        for p in procs.processes:
            if p.is_alive():
                p.kill()
    missing = sorted(set(range(world_size)) - set(results))
    if missing:
        raise RuntimeError(f"spawn: ranks {missing} returned nothing")
    return [results[r] for r in range(world_size)]
