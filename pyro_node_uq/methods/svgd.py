"""SVGD as a method: :class:`~pyro_node_uq.infer.ParticleSVGD` (all particles in one vectorised model call),
started around a MAP fit."""
import math
import time

import pyro
import torch
from pyro.infer import RBFSteinKernel
from tqdm.auto import tqdm

from ..infer.svgd import ParticleSVGD
from .common import (
    as_process_model,
    carry_model_params,
    counted,
    map_values,
    start_from,
    with_start_cost,
)
from .registry import register
from .result import MethodResult

__all__ = ["run_svgd"]


@register("svgd", "SVGD with an RBF kernel, particles around MAP", start="map", demo=True,
          defaults={"num_particles": 16, "num_steps": 300}, quick={"num_particles": 8, "num_steps": 60})
def run_svgd(model, split, *, warm_start=None, num_particles=16, num_steps=300, lr=5e-3, jitter=0.02,
             bandwidth_factor=None, map_steps=None, num_groups=4, seed=0, progress_bar=True):
    """Stein variational gradient descent with an RBF kernel, particles vectorised through the model.

    :param model: a Pyro model (fully vectorised, continuous latents only).
    :param split: the training split.
    :param int num_particles: SVGD particles (one ODE solve per step for all of them).
    :param int num_steps: SVGD steps (Adam on the particles).
    :param float lr: Adam learning rate (constant).  Every particle's update is a kernel-weighted mean of all
        particles' gradients, so near the mode the particles move as one: a step too large for the posterior's
        stiffest direction makes the whole set overshoot together, and the fit it started from is lost late in the
        run (the mean squared update jumps by orders of magnitude for every particle at once).  Lower it if the
        result's ``losses`` (the mean squared update per step) end in such a jump.
    :param float jitter: std of the Gaussian spread of the initial particles around the MAP point.
    :param float bandwidth_factor: scales the median-heuristic kernel bandwidth (``None``: 1).
    :param MethodResult warm_start: MAP fit to start from; fitted with ``map_steps`` steps when ``None``.
    :param int map_steps: MAP steps when ``warm_start`` is ``None`` (default: :func:`run_map`'s).
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
    model = as_process_model(model, split)
    args, kwargs = model.fit_args(split)
    start = start_from("map", warm_start, model, split, seed=seed, progress_bar=progress_bar, num_steps=map_steps)
    pyro.clear_param_store()
    carry_model_params(start)  # a learned noise scale stays at its MAP value
    pyro.set_rng_seed(seed)
    counting = counted(model)
    kernel = RBFSteinKernel(bandwidth_factor=bandwidth_factor)
    svgd = ParticleSVGD(counting, kernel, pyro.optim.Adam({"lr": lr}), num_particles,
                        max_plate_nesting=model.max_plate_nesting)
    init = svgd.initial_particles(map_values(start), jitter, *args, **kwargs)
    pyro.param("svgd_particles", init)
    losses = []
    clock = time.perf_counter()
    with tqdm(range(num_steps), desc="SVGD", disable=not progress_bar, leave=False) as bar:
        for step in bar:
            sq = svgd.step(*args, **kwargs)
            value = sum(sq.values()) / len(sq)
            if not math.isfinite(value):
                raise FloatingPointError(f"SVGD: the particle update became {value} at step {step}; lower lr")
            losses.append(value)
    wall = time.perf_counter() - clock
    with torch.no_grad():
        particles = svgd.get_named_particles()
    group = (num_groups, num_particles // num_groups)  # values are (P, 1) + event: the particle plate is dim -2
    # global values are (P, 1) + event; sites inside the data plate (random effects) keep their plate dim
    samples = {name: v.detach().reshape(group + (v.shape[2:] if v.shape[1] == 1 else v.shape[1:]))
               for name, v in particles.items()}
    result = MethodResult(name="svgd", model=model, samples=samples, losses=losses, wall_time=wall,
                          num_model_evals=counting.count, stochastic_dim=int(svgd.particle_index().shape[1]),
                          param_state=pyro.get_param_store().get_state(), train_split=split)
    return with_start_cost(result, start)
