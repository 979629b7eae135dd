"""NUTS baseline: Pyro's ``NUTS`` on a divergence-rejecting copy of the model, warm-started at a MAP fit."""
import contextlib
import time
import warnings

import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC
from pyro.poutine.util import prune_subsample_sites

from ..infer._pyro_compat import chains_in_process, hmc_statistics
from ..infer.log_joint_nuts import LogJointNUTS
from ..validation import check_int, check_positive
from .common import (
    as_process_model,
    carry_model_params,
    init_loc,
    map_values,
    start_from,
    with_start_cost,
)
from .registry import MethodSkipped, register
from .result import MethodResult

__all__ = ["SamplerStats", "run_nuts"]


class _CountingNUTS(LogJointNUTS):
    """NUTS (with the model's own log joint as its potential where the model offers one) counting its
    potential-energy evaluations (one model solve on the data each), jit or not."""

    num_evaluations = 0

    @property
    def potential_fn(self):
        fn = self.__dict__.get("_uncounted_potential_fn")
        if fn is None:
            return None

        def counted(z):
            self.num_evaluations += 1
            return fn(z)

        return counted

    @potential_fn.setter
    def potential_fn(self, fn):
        self.__dict__["_uncounted_potential_fn"] = fn


class SamplerStats:
    """An ``MCMC`` ``hook_fn`` recording per-draw statistics of an HMC/NUTS kernel, chain after chain.

    Records ``step_size``, ``acceptance_rate`` (the kernel's per-draw mean acceptance probability, recovered
    from its running average), ``diverging`` and ``lp`` (log joint density in the unconstrained space) for
    the kept draws.  Chains must run in this process (see :func:`run_nuts`).
    """

    def __init__(self):
        self.rows, self._prev = [], 0.0

    def __call__(self, kernel, params, stage, i):
        if not stage.startswith("Sample"):
            return
        n = i + 1
        mean, divergences, pe = hmc_statistics(kernel)
        mean = float(mean)
        accept = n * mean - (n - 1) * self._prev if n > 1 else mean
        self._prev = mean
        self.rows.append((float(kernel.step_size), min(max(accept, 0.0), 1.0),
                          bool(divergences and divergences[-1] == i),
                          -float(pe) if pe is not None else float("nan")))

    def as_dict(self, num_chains, num_draws):
        """Statistics ``name -> (num_chains, num_draws)`` tensors, or ``None`` if the run was not recorded."""
        if len(self.rows) != num_chains * num_draws:
            return None
        cols = list(zip(*self.rows))
        names = ("step_size", "acceptance_rate", "diverging", "lp")
        out = {n: torch.tensor(c).reshape(num_chains, num_draws) for n, c in zip(names, cols)}
        return out


@contextlib.contextmanager
def _proposals_rejected_quietly():
    """A diverging proposal is rejected (the model scores it ``-inf``) and counted in ``sample_stats["diverging"]``:
    the solve's warning about it is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NODE solve diverged", category=RuntimeWarning)
        yield


@register("nuts", "NUTS (2 chains from MAP), only for small models", start="map", demo=True,
          defaults={"num_samples": 200, "warmup_steps": 200, "max_latent_dim": 1000},
          quick={"num_samples": 20, "warmup_steps": 20})
def run_nuts(model, split, *, warm_start=None, num_samples=200, warmup_steps=200, num_chains=2, max_tree_depth=6,
             target_accept_prob=0.8, map_steps=None, init_jitter=0.01, max_latent_dim=1000, seed=0, progress_bar=True,
             jit_compile=False, full_mass=False):
    """NUTS with several chains, each started near a MAP fit (plus a small jitter, so R-hat is informative).

    The model's diverging solves are rejected proposals, not errors (``model.with_divergence("reject")``): they
    are not warned about one by one, and show as divergent transitions in ``sample_stats["diverging"]``.
    Chains run one after another in this process so that the data-model evaluations and per-draw statistics are
    counted; NUTS is for small models, and a model above ``max_latent_dim`` raises :class:`MethodSkipped` (a
    ``ValueError``).

    :param model: a :class:`~pyro_node_uq.models.ProcessModel` or a plain Pyro model.
    :param split: the training split.
    :param MethodResult warm_start: MAP fit to start from; fitted with ``map_steps`` steps when ``None``.
    :param int num_samples: kept draws per chain.
    :param int warmup_steps: adaptation steps per chain.
    :param int num_chains: chains.
    :param int max_tree_depth: NUTS tree depth limit (2^depth leapfrog steps at most per draw).
    :param float target_accept_prob: step-size adaptation target.
    :param int map_steps: MAP steps when ``warm_start`` is ``None`` (default: :func:`run_map`'s).
    :param float init_jitter: std of the Gaussian jitter added to the MAP start of each chain.
    :param int max_latent_dim: refuse models with more scalar latent dimensions than this (default 1000: NUTS
        needs up to ``2^max_tree_depth`` gradients per draw and more adaptation as the dimension grows, so beyond
        that 2 chains of 200 + 200 draws take hours; ``benchmarks/nuts_ess.py`` measures the cost per gradient).
    :param int seed: seed.
    :param bool progress_bar: show MCMC's progress bar.
    :param bool jit_compile: trace the potential energy with ``torch.jit`` (Pyro's ``jit_compile``).  Off by
        default: on a NODE with many observation times the eager fixed-step solve's hand-written gradient is
        cheaper than autograd through a traced solve (a trace cannot keep it); on a short grid the two are about
        even.  On a small model without a solve tracing pays: it removes Pyro's per-call cost of running the model.
    :param bool full_mass: adapt a dense mass matrix (Pyro's ``full_mass``) instead of a diagonal one.
    :rtype: MethodResult (``samples`` ``(chains, draws, ...)``, ``mcmc``, ``sample_stats``)

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2)
        >>> model = problem.default_model(R_hidden=(4,))
        >>> res = run_nuts(model, problem.train, num_samples=2, warmup_steps=2, max_tree_depth=2, map_steps=2,
        ...                progress_bar=False)
        >>> res.samples["R.0.weight"].shape
        torch.Size([2, 2, 4, 4])
    """
    num_samples, num_chains = check_int(num_samples, "num_samples", 1), check_int(num_chains, "num_chains", 1)
    warmup_steps, max_tree_depth = check_int(warmup_steps, "warmup_steps", 0), check_int(max_tree_depth,
                                                                                         "max_tree_depth", 1)
    check_positive(init_jitter, "init_jitter", allow_zero=True)
    if not 0 < target_accept_prob < 1:
        raise ValueError(f"target_accept_prob: expected a number in (0, 1), got {target_accept_prob}")
    model = as_process_model(model, split).with_divergence("reject")
    args, kwargs = model.fit_args(split)
    with poutine.block(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a diverging prior draw is fine for counting dims
        trace = prune_subsample_sites(poutine.trace(model).get_trace(*args, **kwargs))
    dim = sum(int(trace.nodes[name]["value"].numel()) for name in trace.stochastic_nodes)
    if dim > max_latent_dim:
        raise MethodSkipped(f"run_nuts: the model has {dim} latent dimensions, above max_latent_dim={max_latent_dim}; "
                         "NUTS is only practical for small models. Use a smaller network (e.g. R_hidden=(8,)), "
                         "a layer-wise method, or raise max_latent_dim.")
    start = start_from("map", warm_start, model, split, seed=seed, progress_bar=progress_bar, num_steps=map_steps)
    start_values = map_values(start, derived=True)
    pyro.clear_param_store()
    carry_model_params(start, start_values)  # a learned noise scale is held at its MAP value, not reset
    pyro.set_rng_seed(seed)
    kernel = _CountingNUTS(model, init_strategy=init_loc(model, seed, start_values), max_tree_depth=max_tree_depth,
                           target_accept_prob=target_accept_prob, max_plate_nesting=model.max_plate_nesting,
                           jit_compile=jit_compile, ignore_jit_warnings=True, full_mass=full_mass)
    initial = None
    if num_chains > 1:  # jittered MAP starts in the unconstrained space, one per chain
        with _proposals_rejected_quietly():  # setup's step-size search takes trial steps
            kernel.setup(0, *args, **kwargs)
        initial = {k: v + init_jitter * torch.randn((num_chains,) + v.shape, dtype=v.dtype, device=v.device)
                   for k, v in kernel.initial_params.items()}
        kernel.cleanup()
    stats = SamplerStats()
    with warnings.catch_warnings():  # "chains will be drawn sequentially" is what we want
        warnings.filterwarnings("ignore", message="num_chains=", category=UserWarning)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                    initial_params=initial, hook_fn=stats, disable_progbar=not progress_bar)
    chains_in_process(mcmc, kernel, num_samples, warmup_steps, num_chains, progress_bar, initial, stats)
    clock = time.perf_counter()
    with _proposals_rejected_quietly():
        mcmc.run(*args, **kwargs)
    wall = time.perf_counter() - clock
    result = MethodResult(name="nuts", model=model, mcmc=mcmc, samples=mcmc.get_samples(group_by_chain=True),
                          wall_time=wall, num_model_evals=kernel.num_evaluations, stochastic_dim=dim,
                          sample_stats=stats.as_dict(num_chains, num_samples),
                          param_state=pyro.get_param_store().get_state(), train_split=split)
    return with_start_cost(result, start)
