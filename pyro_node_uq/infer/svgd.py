"""SVGD baseline: Pyro's ``SVGD`` (all particles in one vectorised model call), started around a MAP fit."""
import math
import time

import pyro
import torch
from pyro import poutine
from pyro.infer import SVGD, RBFSteinKernel
from torch.distributions import biject_to
from tqdm.auto import tqdm

from .baselines import carry_model_params, map_values, run_map
from .counting import CountingModel
from .result import MethodResult

__all__ = ["ParticleSVGD", "run_svgd"]


class ParticleSVGD(SVGD):
    """Pyro's :class:`~pyro.infer.SVGD` with the kernel applied to whole particles.

    Pyro packs the vectorised particles site by site (all particles of site 1, then of site 2, ...), while its
    ``step`` reads the flat tensor as ``(num_particles, D)`` rows: with more than one latent site a "row" then
    mixes different particles.  Here the flat tensor is indexed through a ``(num_particles, D)`` index matrix
    whose rows are true particles; the Stein update itself is Pyro's (same kernel, same modes).
    """

    def particle_index(self, *args, **kwargs):
        """``(num_particles, D)`` indices into the flat particle tensor, one row per particle."""
        if getattr(self, "_index", None) is None:
            self.guide._setup_prototype(*args, **kwargs)
            n = sum(int(v.numel()) for v in self.guide._unconstrained_shapes.values())
            flat = torch.arange(n)
            rows = [v.reshape(self.num_particles, -1) for _, v in self.guide._unpack_latent(flat)]
            self._index = torch.cat(rows, dim=-1)
        return self._index

    @torch.no_grad()
    def step(self, *args, **kwargs):
        """One SVGD update of all particles; returns the mean squared update per site (as Pyro's)."""
        index = self.particle_index(*args, **kwargs)
        with torch.enable_grad(), poutine.trace(param_only=True) as param_capture:
            loss = self.loss(self.model, self.guide, *args, **kwargs)
            loss.backward()
        flat = pyro.param("svgd_particles").unconstrained()
        x, grad = flat[index], flat.grad[index]  # (P, D): rows are particles
        log_kernel, kernel_grad = self.kernel.log_kernel_and_grad(x)
        if self.mode == "multivariate":
            kernel = log_kernel.sum(-1).exp()
            update = kernel @ grad + torch.einsum("nm,nm...->n...", kernel, kernel_grad)
        else:
            kernel = log_kernel.exp()
            update = torch.einsum("nmd,md->nd", kernel, grad) + torch.einsum("nmd,nmd->nd", kernel, kernel_grad)
        flat.grad = torch.zeros_like(flat).index_put_((index,), update / self.num_particles)
        squared = {site["name"]: v.mean().item() for site, v in self.guide._unpack_latent(flat.grad.pow(2))}
        params = set(site["value"].unconstrained() for site in param_capture.trace.nodes.values())
        self.optim(params)
        pyro.infer.util.zero_grads(params)
        return squared

    def initial_particles(self, values, jitter, *args, **kwargs):
        """Flat particle tensor: the constrained point ``values`` (site -> tensor) plus Gaussian jitter."""
        index = self.particle_index(*args, **kwargs)
        loc = []
        for name, site in self.guide.prototype_trace.iter_stochastic_nodes():
            loc.append(biject_to(site["fn"].support).inv(values[name]).reshape(-1))
        loc = torch.cat(loc)
        if loc.numel() != index.shape[1]:
            raise ValueError(f"initial_particles: values have {loc.numel()} dims, the model {index.shape[1]}")
        rows = loc + jitter * torch.randn(index.shape, dtype=loc.dtype, device=loc.device)
        return torch.empty(index.numel(), dtype=loc.dtype, device=loc.device).index_put_((index.to(loc.device),), rows)


def run_svgd(model, split, num_particles=32, num_steps=1000, lr=1e-2, jitter=0.02, bandwidth_factor=None,
             map_result=None, map_steps=1000, num_groups=4, seed=0, progress_bar=True):
    """Stein variational gradient descent with an RBF kernel, particles vectorised through the model.

    :param model: a Pyro model (fully vectorised, continuous latents only).
    :param split: the training split.
    :param int num_particles: SVGD particles (one ODE solve per step for all of them).
    :param int num_steps: SVGD steps (Adam on the particles).
    :param float lr: Adam learning rate.
    :param float jitter: std of the Gaussian spread of the initial particles around the MAP point.
    :param float bandwidth_factor: scales the median-heuristic kernel bandwidth (``None``: 1).
    :param MethodResult map_result: MAP fit to start from; fitted when ``None``.
    :param int num_groups: the particles are stored as ``(num_groups, num_particles / num_groups)`` "chains"
        (for R-hat across groups in ArviZ); must divide ``num_particles``.
    :rtype: MethodResult (``losses`` holds the mean squared SVGD update per step)

    Example::

        >>> from pyro_node_uq.data import load_problem
        >>> problem = load_problem("chemical", num_train=2)
        >>> res = run_svgd(problem.default_model(), problem.train, num_particles=8, num_steps=2, map_steps=2,
        ...                progress_bar=False)
        >>> res.samples["R.0.weight"].shape
        torch.Size([4, 2, 32, 4])
    """
    if num_particles < 2 or num_particles % num_groups:
        raise ValueError(f"run_svgd: num_particles ({num_particles}) must be >= 2 and divisible by "
                         f"num_groups ({num_groups})")
    map_result = map_result or run_map(model, split, map_steps, seed=seed, progress_bar=progress_bar)
    pyro.clear_param_store()
    carry_model_params(map_result)  # a learned noise scale stays at its MAP value
    pyro.set_rng_seed(seed)
    counted = CountingModel(model)
    kernel = RBFSteinKernel(bandwidth_factor=bandwidth_factor)
    svgd = ParticleSVGD(counted, kernel, pyro.optim.Adam({"lr": lr}), num_particles, max_plate_nesting=1)
    init = svgd.initial_particles(map_values(map_result), jitter, *split.args, **split.kwargs)
    pyro.param("svgd_particles", init)
    losses = []
    start = time.perf_counter()
    with tqdm(range(num_steps), desc="SVGD", disable=not progress_bar, leave=False) as bar:
        for step in bar:
            sq = svgd.step(*split.args, **split.kwargs)
            value = sum(sq.values()) / len(sq)
            if not math.isfinite(value):
                raise FloatingPointError(f"SVGD: the particle update became {value} at step {step}; lower lr")
            losses.append(value)
    wall = time.perf_counter() - start
    with torch.no_grad():
        particles = svgd.get_named_particles()
    group = (num_groups, num_particles // num_groups)  # values are (P, 1) + event: the particle plate is dim -2
    samples = {name: v.detach().reshape(group + v.shape[2:]) for name, v in particles.items()}
    return MethodResult(name="svgd", model=model, samples=samples, losses=losses,
                        wall_time=wall + map_result.wall_time, num_model_evals=counted.count + map_result.num_model_evals,
                        stochastic_dim=int(svgd.particle_index().shape[1]),
                        param_state=pyro.get_param_store().get_state())
