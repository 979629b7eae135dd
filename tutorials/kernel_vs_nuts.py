# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The Langevin kernel against NUTS: ESS per second and R-hat in ArviZ
#
# `LangevinKernel` is a `pyro.infer.mcmc.MCMCKernel`: one Langevin step per draw,
#
# $$z' = z + \tfrac{\epsilon^2}{2} M \nabla \log p(z \mid \text{data}) + \epsilon M^{1/2} \xi,$$
#
# with a diagonal preconditioner M adapted in warm-up, a step size ε tuned by dual averaging, and an optional
# Metropolis-Hastings correction (MALA: exact; without it ULA: biased by O(ε) but never rejects). Its
# **ensemble mode** advances P chains in one vectorised call: every step costs a single ODE solve for all P
# particles. NUTS spends up to 2^depth gradient evaluations per draw, one chain at a time.
#
# Here both run on a small NODE of the `chemical` problem (A -> B -> C under a temperature history, B hidden)
# and we compare effective sample size per second of wall time and split R-hat, computed by ArviZ.
# Set `CI` to run a tiny smoke version.

# %%
import os
import tempfile
import time
from pathlib import Path

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from pyro.infer import MCMC

from pyro_node_uq.data import load_problem
from pyro_node_uq.diagnostics import plot_trajectories, score, to_inference_data
from pyro_node_uq.infer import LangevinKernel, particles_to_chains
from pyro_node_uq.methods import MethodResult, map_values, run_map, run_nuts

SMOKE = bool(os.environ.get("CI"))
OUT = Path(os.environ.get("TUTORIAL_OUT", Path(tempfile.gettempdir()) / "pyro_node_uq_tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # tiny networks: thread start-up costs more than it saves (and cores may be shared)
pyro.set_rng_seed(0)

MAP_STEPS = 30 if SMOKE else 1500
NUTS_WARMUP, NUTS_DRAWS, NUTS_DEPTH = (4, 4, 3) if SMOKE else (100, 100, 4)
LV_WARMUP, LV_DRAWS, PARTICLES = (10, 10, 4) if SMOKE else (400, 400, 16)
print(f"smoke mode: {SMOKE}; figures go to {OUT}")

# %% [markdown]
# ## A small NODE
#
# Three training trajectories on 11 times (RK4 steps on the observation grid) and a vector field with 4 hidden
# units: 35 weights, small enough for NUTS. `init` of the default model fixes h(0) = (1, 0, 0) mol/L; B is the unobserved third state.

# %%
problem = load_problem("chemical", num_train=3, num_test=4, num_extrapolation=4, num_times=11)
train = problem.train
model = problem.default_model(R_hidden=(4,))
print(model)

# %% [markdown]
# Both samplers start from the same MAP fit (so neither pays for finding the mode; its cost is left out of
# the timings below).

# %%
map_fit = run_map(model, train, num_steps=MAP_STEPS, progress_bar=not SMOKE)
start = map_values(map_fit)
print(f"MAP: {map_fit.wall_time:.1f} s")

# %% [markdown]
# ## NUTS
#
# `run_nuts` runs Pyro's `NUTS` on a copy of the model that turns a diverging ODE solve into a rejected
# proposal, with chains started at jittered copies of the MAP and per-draw statistics recorded for ArviZ.

# %%
nuts = run_nuts(model, train, num_samples=NUTS_DRAWS, warmup_steps=NUTS_WARMUP, num_chains=2,
                max_tree_depth=NUTS_DEPTH, warm_start=map_fit, progress_bar=not SMOKE)
nuts.wall_time -= map_fit.wall_time  # sampling only
print(f"NUTS: {nuts.wall_time:.1f} s, {nuts.num_model_evals - map_fit.num_model_evals} model evaluations")

# %% [markdown]
# ## The Langevin kernel, ensemble mode
#
# P particles start at jittered copies of the MAP. `num_particles=P` makes the kernel evaluate all of them in
# one model call per step (a plate over particles left of the model's own plates), so a step costs about as
# much as a single-chain step. We run MALA (`adjust=True`) and ULA (`adjust=False`) with the exact score.
# `particles_to_chains` turns the `(chains, draws, P, ...)` samples into P chains for ArviZ.

# %%
gen = torch.Generator().manual_seed(1)
initial = {k: v + 0.01 * torch.randn((PARTICLES,) + v.shape, generator=gen) for k, v in start.items()}
langevin = {}
for name, adjust in (("MALA", True), ("ULA", False)):
    pyro.set_rng_seed(1)
    kernel = LangevinKernel(model, adjust=adjust, drift="exact", num_particles=PARTICLES)
    mcmc = MCMC(kernel, num_samples=LV_DRAWS, warmup_steps=LV_WARMUP, initial_params=initial,
                disable_progbar=SMOKE)
    tic = time.perf_counter()
    mcmc.run(*train.args, **train.kwargs)
    wall = time.perf_counter() - tic
    samples = particles_to_chains(mcmc.get_samples(group_by_chain=True), PARTICLES)
    langevin[name] = MethodResult(name=f"langevin_{name.lower()}", model=model, samples=samples, wall_time=wall)
    accept = mcmc.diagnostics()["acceptance rate"]["chain 0"]
    print(f"{name}: {wall:.1f} s, step size {kernel.step_size:.3g}, acceptance {float(accept):.2f}")

# %% [markdown]
# ## ESS per second and R-hat in ArviZ
#
# `to_inference_data` gives each posterior the same groups and dims (here on the test split, so the
# `posterior_predictive` group is a genuine out-of-sample prediction). `az.ess` (bulk) and `az.rhat`
# (rank-normalised split R-hat) over every weight; for the ensemble each particle is a chain, so R-hat
# checks that the particles agree with each other.

# %%
results = {"NUTS": nuts, **langevin}
idata = {name: to_inference_data(res, problem.test, output_names=problem.obs_names) for name, res in results.items()}
weights = [v for v in idata["NUTS"].posterior.data_vars if v.startswith("R.")]


def flat(dataset):
    return np.concatenate([np.ravel(v) for v in dataset.data_vars.values()])


rows = {}
for name, data in idata.items():
    ess = flat(az.ess(data, var_names=weights, method="bulk"))
    rhat = flat(az.rhat(data, var_names=weights))
    wall = results[name].wall_time
    rows[name] = {"seconds": wall, "draws": int(data.posterior.sizes["chain"] * data.posterior.sizes["draw"]),
                      "min_ess": ess.min(), "median_ess": np.median(ess), "min_ess_per_s": ess.min() / wall,
                      "median_ess_per_s": np.median(ess) / wall, "max_rhat": rhat.max()}
header = f"{'sampler':8s} {'s':>7s} {'draws':>6s} {'minESS':>8s} {'medESS':>8s} {'minESS/s':>9s} {'medESS/s':>9s} {'maxRhat':>8s}"
print(header)
for name, r in rows.items():
    print(f"{name:8s} {r['seconds']:7.1f} {r['draws']:6d} {r['min_ess']:8.1f} {r['median_ess']:8.1f} "
          f"{r['min_ess_per_s']:9.2f} {r['median_ess_per_s']:9.2f} {r['max_rhat']:8.3f}")
for name in langevin:
    ratio = rows[name]["median_ess_per_s"] / rows["NUTS"]["median_ess_per_s"]
    print(f"{name}: median ESS/s = {ratio:.2f} x NUTS")

# %% [markdown]
# **Read R-hat before ESS per second.** In the full run (one run on a shared 2-core machine) every sampler
# had a worst split R-hat far above 1.01 (NUTS 2.8, MALA 3.8, ULA 4.0) and bulk ESS of only 2-20 over
# 200 (NUTS) and 6400 (ensemble) draws: within the budget none of them mixed across the posterior of this
# NODE, whose weights have symmetries and several local modes; the trace plot below shows chains drifting
# slowly in different places. The ESS-per-second ratio (the ensembles about 65x NUTS here) is therefore
# only indicative. What the run does show cleanly is the cost per draw: 6400 ensemble draws (16 particles
# x 400) took 13 s, while 200 NUTS draws took 146 s (5852 gradient evaluations), because each ensemble
# step is one vectorised model call for all particles. Longer runs, more warm-up, or starting the ensemble
# from a trained AutoLangevin guide (`drift="blend"` or `"learned"`, `guide=...`) are the next things to try.

# %% [markdown]
# `az.summary` for one layer, side by side, and `az.compare` of the predictive fit on the test split.

# %%
for name, data in idata.items():
    print(name)
    print(az.summary(data, var_names=["R.1.bias"])[["mean", "sd", "ess_bulk", "r_hat"]])
print(az.compare(idata)[["rank", "elpd_loo", "p_loo", "weight"]])

# %% [markdown]
# A figure: ESS per second (log scale) and the worst R-hat per sampler, plus the trace of one weight.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
names = list(rows)
x = np.arange(len(names))
axes[0].bar(x - 0.2, [rows[n]["min_ess_per_s"] for n in names], 0.4, label="min over weights")
axes[0].bar(x + 0.2, [rows[n]["median_ess_per_s"] for n in names], 0.4, label="median over weights")
axes[0].set_yscale("log")
axes[0].set_xticks(x, names)
axes[0].set_ylabel("bulk ESS per second")
axes[0].legend(fontsize=8)
axes[1].bar(x, [rows[n]["max_rhat"] for n in names], 0.5, color="C2")
axes[1].axhline(1.01, color="k", ls=":", lw=1, label="1.01")
axes[1].set_xticks(x, names)
axes[1].set_ylabel("max split R-hat over weights")
axes[1].set_ylim(0.99, max(1.05, max(rows[n]["max_rhat"] for n in names) * 1.02))
axes[1].legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "tutorial_c_ess_rhat.png", dpi=120)
plt.close(fig)

fig, axes = plt.subplots(len(idata), 2, figsize=(9, 2.2 * len(idata)), squeeze=False)
for row, (name, data) in zip(axes, idata.items()):
    az.plot_trace(data, var_names=["R.1.bias"], coords={"R.1.bias_dim_0": [0]}, axes=row[None, :],
                  compact=True, legend=False)
    row[0].set_title(f"{name}: R.1.bias[0]", fontsize=9)
    row[1].set_title(f"{name}: trace per chain", fontsize=9)
fig.tight_layout()
fig.savefig(OUT / "tutorial_c_trace.png", dpi=120)
plt.close(fig)

# %% [markdown]
# ## Do the posteriors predict alike?
#
# Same scores for all three on the test trajectories, and the MALA ensemble's predictive bands (including the
# hidden intermediate B, which is never observed).

# %%
for name, res in results.items():
    pred = res.predict(problem.test, num_samples=200)
    s = score(pred, problem.test.y, noise_scale=problem.noise_scale, h_true=problem.test.h_true)
    print(f"{name:5s} rmse {s['rmse']:.4f}  nll {s['nll']:.3f}  cov90 {s['coverage_90']:.2f}  "
          f"hidden cov90 {s['hidden_coverage_90']:.2f}")
pred = langevin["MALA"].predict(problem.test, num_samples=200)
plot_trajectories(pred, problem.test, path=OUT / "tutorial_c_bands_mala.png", output_names=problem.obs_names,
                  title="MALA ensemble, test trajectories")
print(sorted(p.name for p in OUT.glob("tutorial_c_*.png")))
