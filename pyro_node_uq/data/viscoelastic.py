"""A standard linear solid (Zener model) under random strain histories.

    sigma        = E_inf * eps + E_1 * (eps - eps_v)
    d eps_v / dt = (E_1 / eta) * (eps - eps_v)          (the viscous strain eps_v is never observed)

Units: time in s, strain in % (percent), stress in MPa x 10 (so E values are MPa x 10 per %).
Parameters: E_inf = 1.0, E_1 = 2.0, eta = 2.0 (relaxation time eta / E_1 = 1 s).
Strain: eps(t) = A * (sum of 3 random sines, 0.05-0.5 Hz), A ~ U(0.5, 1.0) % for train/test and U(1.5, 2.0) %
for the extrapolation split.  Observed: stress at 51 times over 10 s, Gaussian noise std 0.05.
Model inputs: x = (eps, d eps / dt); the strain rate tells the model the loading direction.
"""
import torch
import torchdiffeq

from .problem import Problem, Split, random_sines

__all__ = ["viscoelastic"]

E_INF, E_1, ETA = 1.0, 2.0, 2.0


def _simulate(n, amplitude, t, noise, gen):
    strain = random_sines(n, amplitude, (0.05, 0.5), generator=gen)
    rhs = lambda s, ev: (E_1 / ETA) * (strain(s)[:, None] - ev)
    ev = torchdiffeq.odeint(rhs, torch.zeros(n, 1, dtype=torch.float64), t, rtol=1e-9, atol=1e-10).movedim(0, 1)
    eps = strain(t)[..., None]
    y_true = E_INF * eps + E_1 * (eps - ev)
    y = y_true + noise * torch.randn(y_true.shape, generator=gen, dtype=torch.float64)
    x = torch.cat([eps, strain.rate(t)[..., None]], -1)
    return Split(t=t, x=x, y=y, y_true=y_true, h_true=ev)


def viscoelastic(seed=0, num_train=16, num_test=16, num_extrapolation=16, num_times=51, t_end=10.0, noise=0.05):
    """The ``viscoelastic`` problem (see module docstring for equations, units and parameter values).

    :param int seed: seed of the strain histories and the noise.
    :param int num_train: training trajectories (likewise ``num_test``, ``num_extrapolation``).
    :param int num_times: observation times on ``[0, t_end]`` seconds.
    :param float noise: observation noise std.
    :rtype: Problem
    """
    return Problem.simulated(
        _simulate, seed, (num_train, num_test, num_extrapolation), t_end, num_times, (0.5, 1.0), (1.5, 2.0), noise,
        name="viscoelastic", description=__doc__, obs_names=("stress",), input_names=("strain", "strain_rate"),
        state_names=("viscous_strain",), time_unit="s",
        model_kwargs={"hidden_dim": 2, "R_hidden": (32,), "Z_hidden": (), "scale": noise, "init": "zero"},
    )
