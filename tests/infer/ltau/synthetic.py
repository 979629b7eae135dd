"""A synthetic LTAU: a 1-D latent feature whose per-epoch errors are exponential with a known mean."""
import torch

from pyro_node_uq.infer import LTAU


def synthetic(mode="full", n=300, epochs=200, seed=0, **kwargs):
    """1-D latent feature x in [0, 1]; each sample's error per epoch ~ Exponential(mean = 0.1 + x)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    keys = torch.arange(n) * 7 + 3  # arbitrary stable ids
    ltau = LTAU(mode=mode, **kwargs)
    mean = 0.1 + x[:, 0]
    for _ in range(epochs):
        ltau.record(keys, -mean * torch.rand(n, generator=gen, dtype=torch.float64).log())
    return ltau.fit(x, keys), gen
