import pyro
import pytest
import torch

# Our tensors are small: one intra-op thread avoids OpenMP spin-waits that make each op ~10x slower on a busy
# 2-core machine (CI runs here too).
torch.set_num_threads(1)
# float64 everywhere, also for module-scoped fixtures built before any test runs
torch.set_default_dtype(torch.float64)


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    """Every test starts with an empty param store and a fixed seed; a test may change the dtype for itself."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def two_processes():
    """The results of ``tests/infer/distributed/workers.run_all`` on 2 gloo processes spawned once for the whole
    session (every 2-process test reads it), by rank."""
    from pyro_node_uq.infer.distributed import spawn

    from .infer.distributed.workers import run_all

    return spawn(run_all, 2, timeout=400)
