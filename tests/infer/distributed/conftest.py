import pytest

from pyro_node_uq.infer.distributed import spawn

from .workers import run_all


@pytest.fixture(scope="session")
def two_processes():
    """The results of :func:`workers.run_all` on 2 gloo processes spawned once for the whole session, by rank."""
    return spawn(run_all, 2, timeout=400)
