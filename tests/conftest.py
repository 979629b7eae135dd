import pyro
import pytest
import torch

# Our tensors are small: one intra-op thread avoids OpenMP spin-waits that make each op ~10x slower on a busy
# 2-core machine (CI runs here too).
torch.set_num_threads(1)

@pytest.fixture(autouse=True)
def _clean_pyro_state():
    """Every test starts with an empty param store, a fixed seed and float64 unless it asks otherwise."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
    pyro.clear_param_store()
