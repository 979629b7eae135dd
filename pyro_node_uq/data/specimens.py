"""Viscoelastic specimens with specimen-to-specimen variability under random load (strain) histories.

Specimen i is a standard linear solid whose stiffness and relaxation rate vary around the population:

    sigma_i        = exp(b_i) * (E_inf * eps + E_1 * (eps - eps_v))
    d eps_v / dt   = exp(a_i) * (E_1 / eta) * (eps - eps_v)            (eps_v never observed)
    (a_i, b_i)     ~ Normal(0, diag(0.3^2, 0.15^2))                    (``eta_true``)

Units and parameters as in :mod:`~pyro_node_uq.data.viscoelastic`: time in s, strain in %, stress in MPa x 10;
E_inf = 1.0, E_1 = 2.0, eta = 2.0.  Strain histories: amplitude ~ U(0.5, 1.0) % times 3 random sines (0.05-0.5 Hz);
stress observed at 41 times over 10 s (each specimen keeps a random 80% of them: ragged) with noise std 0.05.
Model inputs: x = (eps, d eps / dt).  Splits: held-out specimens (``test``) and the fitted specimens' later
observations (``extrapolation``), see :func:`~pyro_node_uq.data.units.units_problem`.
"""
import torch
import torchdiffeq

from .problem import random_sines
from .units import Units, units_problem
from .viscoelastic import E_1, E_INF, ETA

__all__ = ["specimens"]

OMEGA = (0.3, 0.15)


def specimens(num_units=24, num_times=41, t_end=10.0, noise=0.05, keep=0.8, test_fraction=0.25, time_fraction=2 / 3,
              seed=0):
    """The ``specimens`` problem (module docstring: equations, units, parameters).

    :param int num_units: number of specimens.
    :param int num_times: grid of possible observation times on ``[0, t_end]`` s.
    :param float noise: observation noise std.
    :param float keep: fraction of the grid each specimen is observed at.
    :param float test_fraction: fraction of specimens held out.
    :param float time_fraction: fraction of each fitted specimen's observations used for training.
    :param int seed: seed of the effects, histories, sampling and noise.
    :rtype: ~pyro_node_uq.data.Problem
    """
    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64
    eta = torch.randn(num_units, 2, generator=gen, dtype=dt) * torch.tensor(OMEGA, dtype=dt)
    strain = random_sines(num_units, (0.5, 1.0), (0.05, 0.5), generator=gen)
    t = torch.linspace(0.0, t_end, num_times, dtype=dt)
    rate = eta[:, :1].exp() * (E_1 / ETA)
    rhs = lambda s, ev: rate * (strain(s)[:, None] - ev)
    ev = torchdiffeq.odeint(rhs, torch.zeros(num_units, 1, dtype=dt), t, rtol=1e-9, atol=1e-10).movedim(0, 1)
    eps = strain(t)[..., None]
    y_true = eta[:, 1, None, None].exp() * (E_INF * eps + E_1 * (eps - ev))
    y = y_true + noise * torch.randn(y_true.shape, generator=gen, dtype=dt)
    mask = torch.rand(num_units, num_times, generator=gen) < keep
    mask[:, 0] = True
    x = torch.cat([eps, strain.rate(t)[..., None]], -1)
    units = Units(t=t, x=x, y=torch.where(mask[..., None], y, 0.0), mask=mask, y_true=y_true, h_true=ev,
                  eta_true=eta)
    return units_problem(
        "specimens", __doc__, units, test_fraction, time_fraction, seed,
        obs_names=("stress",), input_names=("strain", "strain_rate"), state_names=("viscous_strain",),
        time_unit="s", noise_scale=noise,
        model_kwargs={"hidden_dim": 2, "R_hidden": (32,), "Z_hidden": (), "effects": ("rate", "output"), "scale": "learned",
                          "scale_init": 0.1, "init": "zero"})
