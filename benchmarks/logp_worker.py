"""A timing worker for the peer benchmark (not a test): log p + gradient calls of the package found on its path.

``peer_numpyro.py`` starts one worker per package checkout (the current tree, and optionally an older commit
given with ``--baseline-src``), all on the core the benchmark is pinned to, and asks them in turn for one timed
call at a time, so calls of every version and of the JAX peers interleave while only one process runs.

Protocol, one line each way: ``P backend`` (``backend``: ``default`` for the model's own solver or
``torchdiffeq``) answers the seconds of one ``log p + backward`` call of ``P`` weight particles; ``quit`` ends.

    PYTHONPATH=<checkout>:benchmarks python benchmarks/logp_worker.py
"""
import sys
import time

import torch
from timing import logp_and_grad

from pyro_node_uq.data import load_problem


def particle_weights(shapes, P, dtype=torch.float32):
    """The benchmark's weights for ``P`` particles ``{name: (P, 1, ...)}``: a fixed base plus small per-particle
    noise, the same in every process for the same ``P``."""
    gen = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=gen, dtype=torch.float64) / s[-1] ** 0.5 for k, s in shapes.items()}
    gen = torch.Generator().manual_seed(1000 + P)
    return {k: (v + 0.05 * torch.randn((P, 1) + v.shape, generator=gen, dtype=torch.float64)).to(dtype)
            for k, v in base.items()}


def main():
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    problem = load_problem("chemical", dtype=torch.float32)
    split, model = problem.train, problem.default_model()
    model.init = model.init.float()
    solvers = {"default": model.solver, "torchdiffeq": {"backend": "torchdiffeq"}}
    cache = {}
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        P, backend = line.split()
        params = cache.setdefault(int(P), particle_weights(model.weight_shapes(), int(P)))
        start = time.perf_counter()
        logp_and_grad(model, split, params, solvers[backend])
        print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":
    main()
