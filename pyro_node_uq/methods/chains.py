"""Independent MCMC runs as a method: split across the processes of a ``torch.distributed`` group (or run in this
one) and gathered on rank 0 into one chain-shaped result."""
import time

import pyro
import torch
from pyro.infer import MCMC

from ..infer.distributed.chains import map_across_ranks
from ..infer.mcmc import particles_to_chains
from .common import as_process_model
from .result import MethodResult

__all__ = ["run_chains"]


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
    :returns: on rank 0 a :class:`~pyro_node_uq.methods.MethodResult` with ``samples`` of shape
        ``(num_chains * num_particles, num_samples, ...)`` (``to_inference_data`` gives it a ``chain`` dim);
        ``None`` on the other ranks.
    """
    model = as_process_model(model, split)
    args, kwargs = model.fit_args(split)

    def one_run(c):
        pyro.set_rng_seed(seed + c)
        start = time.perf_counter()
        mcmc = MCMC(kernel_fn(model), num_samples=num_samples, warmup_steps=warmup_steps,
                    disable_progbar=not progress_bar)
        mcmc.run(*args, **kwargs)
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
