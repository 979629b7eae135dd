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
# # A NODE model of your own process: AutoNormal against AutoLangevin in ArviZ
#
# This tutorial builds a neural-ODE model for a process that is *not* one of the packaged problems, fits it
# with mean-field VI (`AutoNormal`) and with the Langevin score-hypernetwork guide (`AutoLangevin`, started
# from the AutoNormal fit), and compares the two posteriors in ArviZ: summaries, PSIS-LOO, posterior
# predictive checks and predictive bands on held-out and extrapolated inputs.
#
# **The process.** A first-order system driven by an input u(t) through a saturating actuator, e.g. a heated
# tank whose heater power saturates:
#
# $$\tau \frac{dh}{dt} = K \tanh(u(t)) - h, \qquad y(t) = h(t) + \varepsilon, \quad \varepsilon \sim
# \mathcal N(0, \sigma^2).$$
#
# The output depends on the whole input history (the state h integrates it), which is what a NODE learns:
# $dh/dt = R(h, u; w_R)$ with an MLP R whose weights are Pyro sample sites.
#
# Run as a script (`python tutorials/node_model_autolangevin.py`) or open as a notebook with
# `jupytext --to ipynb`. With the environment variable `CI` set it runs a tiny smoke version.

# %%
import os
import tempfile
from pathlib import Path

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from torchdiffeq import odeint

from pyro_node_uq.data import Split, random_sines
from pyro_node_uq.diagnostics import plot_trajectories, score, to_inference_data
from pyro_node_uq.infer import AutoLangevin, fit_svi
from pyro_node_uq.methods import MethodResult, estimate_elbo
from pyro_node_uq.models import NODEModel

SMOKE = bool(os.environ.get("CI"))
OUT = Path(os.environ.get("TUTORIAL_OUT", Path(tempfile.gettempdir()) / "pyro_node_uq_tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # tiny networks: thread start-up costs more than it saves (and cores may be shared)
pyro.set_rng_seed(0)

NUM_TRAIN = 4 if SMOKE else 12
NORMAL_STEPS = 30 if SMOKE else 1500
LANGEVIN_STEPS = 10 if SMOKE else 600
NUM_DRAWS = 40 if SMOKE else 400
print(f"smoke mode: {SMOKE}; figures go to {OUT}")

# %% [markdown]
# ## 1. Simulate the process
#
# Inputs are smooth random signals (`random_sines`); the training and test inputs have the same amplitude
# range, the extrapolation inputs are larger, so the actuator saturates more than anything seen in training.
# A `Split` holds the times, inputs `(N, T, 1)`, noisy outputs `(N, T, 1)`, noise-free truth and hidden state.

# %%
TAU, GAIN, NOISE = 1.5, 2.0, 0.05
t = torch.linspace(0.0, 10.0, 41)


def simulate(n, amplitude, seed):
    gen = torch.Generator().manual_seed(seed)
    u = random_sines(n, amplitude, (0.05, 0.3), generator=gen)
    rhs = lambda s, h: (GAIN * torch.tanh(u(s)[:, None]) - h) / TAU
    h = odeint(rhs, torch.zeros(n, 1), t, rtol=1e-8, atol=1e-8).movedim(0, 1)  # (n, T, 1)
    y = h + NOISE * torch.randn(h.shape, generator=gen)
    return Split(t=t, x=u(t)[..., None], y=y, y_true=h.clone(), h_true=h.clone())


train = simulate(NUM_TRAIN, (0.3, 1.2), seed=1)
test = simulate(8, (0.3, 1.2), seed=2)
extrapolation = simulate(8, (1.5, 2.5), seed=3)
print(train.x.shape, train.y.shape)

# %% [markdown]
# ## 2. The model
#
# `NODEModel` is a Pyro model `model(t, x, y=None, mask=None)`: every weight of the vector field R is a
# sample site (`R.0.weight`, `R.0.bias`, `R.1.weight`, `R.1.bias`) with a `Normal(0, 1)` prior, the output is
# the hidden state itself (`Z_hidden=None`), and the noise scale is known. Its likelihood is one
# `NODETrajectory` site `"obs"`: a single ODE solve integrates all weight particles at once, which is what
# makes vectorised ELBO particles cheap.

# %%
model = NODEModel(obs_dim=1, input_dim=1, R_hidden=(16,), Z_hidden=None, scale=NOISE,
                  solver={"method": "rk4", "step_size": 0.25})
print(model)

# %% [markdown]
# ## 3. Mean-field VI: AutoNormal
#
# `model.init_loc_fn(0)` gives a Glorot initialisation (a zero start never breaks the symmetry between hidden
# units). Eight ELBO particles per step are vectorised: one ODE solve per step.

# %%
elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
normal = AutoNormal(model, init_loc_fn=model.init_loc_fn(0), init_scale=0.01)
fit_normal = fit_svi(model, normal, train, num_steps=NORMAL_STEPS, lr=2e-2, loss=elbo, progress_bar=not SMOKE,
                     desc="AutoNormal")
print(f"AutoNormal: {fit_normal.wall_time:.1f} s, final loss {fit_normal.losses[-1]:.1f}")

# %% [markdown]
# ## 4. AutoLangevin, started at the AutoNormal fit
#
# `init_from=normal` copies the AutoNormal means and scales into the Gaussian reference r of the OU chain.
# The score network starts at zero output, so before training this guide *is* the AutoNormal posterior; the
# path-KL ELBO is a lower bound on log p(data) for every parameter value, so training can only move it up.
# `score="learned"` means no data-model evaluations inside the guide (the chain's drift is the learned score).

# %%
langevin = AutoLangevin(model, init_from=normal, num_steps=8, step_size=0.2, score="learned")
fit_langevin = fit_svi(model, langevin, train, num_steps=LANGEVIN_STEPS, lr=5e-3, loss=elbo,
                       progress_bar=not SMOKE, desc="AutoLangevin")
print(f"AutoLangevin: {fit_langevin.wall_time:.1f} s, final loss {fit_langevin.losses[-1]:.1f}, "
      f"stats {langevin.stats}")

# %% [markdown]
# Both ELBOs, estimated the same way (64 vectorised particles). For AutoLangevin this is the path-KL bound,
# which is below its own true ELBO, so a higher value is a conservative win.

# %%
elbos = {name: estimate_elbo(model, guide, train, num_particles=64)
         for name, guide in (("AutoNormal", normal), ("AutoLangevin", langevin))}
print({k: round(v, 1) for k, v in elbos.items()})

fig, ax = plt.subplots(figsize=(6, 3))
skip = min(200, len(fit_normal.losses) // 2)  # the first steps fall by orders of magnitude: leave them out
window = max(1, min(20, len(fit_langevin.losses) // 5))
smooth = lambda v: torch.tensor(v).unfold(0, window, 1).mean(-1).numpy()
ax.plot(range(skip + window - 1, len(fit_normal.losses)), smooth(fit_normal.losses[skip:]), label="AutoNormal")
ax.plot(range(len(fit_normal.losses) + window - 1, len(fit_normal.losses) + len(fit_langevin.losses)),
        smooth(fit_langevin.losses), label="AutoLangevin (from the AutoNormal fit)")
ax.set_xlabel("SVI step")
ax.set_ylabel(f"loss (-ELBO), {window}-step mean")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "tutorial_a_losses.png", dpi=120)
plt.close(fig)

# %% [markdown]
# ## 5. Into ArviZ
#
# `to_inference_data` pushes posterior draws through the model in one vectorised `Predictive` trace and
# returns `InferenceData` with `posterior` (weights plus `y_mean` and `hidden`), `posterior_predictive`,
# `log_likelihood` (per trajectory and time), `observed_data` and `constant_data`. Guide draws are split into
# 4 independent chains, so R-hat is meaningful for them too. Wrapping each guide in a `MethodResult` names it.

# %%
results = {name: MethodResult(name=name, model=model, guide=guide)
           for name, guide in (("AutoNormal", normal), ("AutoLangevin", langevin))}
idata = {name: to_inference_data(res, test, num_samples=NUM_DRAWS, num_chains=4) for name, res in results.items()}
weights = ["R.1.weight", "R.1.bias"]
for name, data in idata.items():
    print(name)
    print(az.summary(data, var_names=weights, kind="stats").head(6))

# %% [markdown]
# PSIS-LOO on the held-out trajectories (each trajectory-time pair is one observation) and ArviZ's ranking.

# %%
loo = {name: az.loo(data) for name, data in idata.items()}
for name, value in loo.items():
    print(f"{name}: elpd_loo {value.elpd_loo:.1f} (se {value.se:.1f}), p_loo {value.p_loo:.1f}")
print(az.compare(idata))

# %% [markdown]
# Posterior predictive checks: the density of replicated observations against the observed ones.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, (name, data) in zip(axes, idata.items()):
    az.plot_ppc(data, num_pp_samples=min(50, NUM_DRAWS), ax=ax, random_seed=0)
    ax.set_title(f"{name}: posterior predictive check (test)")
fig.tight_layout()
fig.savefig(OUT / "tutorial_a_ppc.png", dpi=120)
plt.close(fig)

# %% [markdown]
# ## 6. Predictive bands, scores and the extrapolation regime
#
# `MethodResult.predict` is one `Predictive(parallel=True)` call; `score` gives RMSE, CRPS, the Gaussian NLL
# of the predictive mixture and interval coverage. The extrapolation inputs are larger than any in training:
# an honest posterior should widen there.

# %%
for split_name, split in (("test", test), ("extrapolation", extrapolation)):
    for name, res in results.items():
        pred = res.predict(split, num_samples=NUM_DRAWS)
        s = score(pred, split.y, noise_scale=NOISE)
        print(f"{split_name:13s} {name:12s} rmse {s['rmse']:.3f}  nll {s['nll']:.3f}  crps {s['crps']:.3f}  "
              f"cov90 {s['coverage_90']:.2f}  width90 {s['width_90']:.3f}")
        plot_trajectories(pred, split, path=OUT / f"tutorial_a_bands_{split_name}_{name}.png",
                          output_names=["h"], title=f"{name} on {split_name} inputs")

# %% [markdown]
# Look at the saved figures (`tutorial_a_*.png` in the output folder): the loss curves, the PPC densities and
# the predictive bands per method. What to expect from the full run (12 training trajectories, one run on a
# shared 2-core machine): AutoLangevin's path-KL ELBO ends about 10 nats above the AutoNormal ELBO it started
# from (626 against 616), elpd_loo on the test trajectories is slightly higher (505.3 against 504.2), and the
# predictive scores are the same to two digits (test RMSE 0.047, 90% coverage 0.91 for both; extrapolation
# coverage 0.78-0.79). On a posterior this close to Gaussian the Langevin guide improves the bound but
# changes the predictions little; the gain is larger where mean-field VI misses correlations or skew.

# %%
print(sorted(p.name for p in OUT.glob("tutorial_a_*.png")))
