"""1-D rate-independent elastoplasticity with linear isotropic and kinematic hardening under cyclic strain.

    sigma = E (eps - eps_p)
    yield function  f = |sigma - alpha| - (sigma_y + H_iso * p) <= 0
    flow            d eps_p = d gamma * sign(sigma - alpha),  d alpha = H_kin d eps_p,  d p = d gamma

Integrated by the classical return mapping on 40 sub-steps per observation interval (exact for piecewise
linear strain).  Units: strain in units of the yield strain, stress in units of the initial yield stress.
Parameters: E = 1, sigma_y = 1, H_iso = 0.1, H_kin = 0.2.
Strain: eps(t) = A * sin(2 pi t / 2) * (1 + 0.3 * (sum of 2 random sines)), t in [0, 4] (two cycles),
A ~ U(1.5, 3.0) for train/test and U(3.5, 4.5) for the extrapolation split.  Observed: stress at 81 times, Gaussian
noise std 0.03.  Hidden: plastic strain eps_p, back-stress alpha, accumulated plastic strain p.
Model inputs: x = (eps, d eps / dt).

The recommended NODE learns its noise scale (``scale="learned"``, started at the true 0.03): a smooth vector field
of its size does not reproduce the non-smooth yield switch exactly, so its fits leave a misfit well above the
measurement noise.  With the noise fixed at 0.03 that model error has nowhere to go: the likelihood is misspecified
for every fitted network, and each posterior that follows it is over-confident.  ``problem.default_model(scale=0.03)``
gives the fixed-noise model.
"""
import torch

from .problem import Problem, Split, random_sines

__all__ = ["elastoplastic", "return_mapping"]

E, SIGMA_Y, H_ISO, H_KIN = 1.0, 1.0, 0.1, 0.2


def return_mapping(eps):
    """Stress and internal variables along strain paths ``eps`` of shape ``(n, S)`` (fine steps).

    :returns: ``sigma, eps_p, alpha, p``, each ``(n, S)``.
    """
    n, S = eps.shape
    ep, al, p = (torch.zeros(n, dtype=eps.dtype) for _ in range(3))
    out = []
    for k in range(S):
        xi = E * (eps[:, k] - ep) - al
        f = xi.abs() - (SIGMA_Y + H_ISO * p)
        dg = torch.clamp(f, min=0.0) / (E + H_ISO + H_KIN)
        sgn = torch.sign(xi)
        ep, al, p = ep + dg * sgn, al + H_KIN * dg * sgn, p + dg
        out.append(torch.stack([E * (eps[:, k] - ep), ep, al, p], -1))
    res = torch.stack(out, 1)
    return res[..., 0], res[..., 1], res[..., 2], res[..., 3]


def _simulate(n, amplitude, t, noise, gen, substeps=40):
    mod = random_sines(n, (0.3, 0.3), (0.1, 0.4), num_terms=2, offset=1.0, generator=gen)
    amp = amplitude[0] + (amplitude[1] - amplitude[0]) * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    fine = torch.linspace(float(t[0]), float(t[-1]), (len(t) - 1) * substeps + 1, dtype=torch.float64)
    strain = lambda s: amp * torch.sin(torch.pi * s) * mod(s)
    sigma, ep, al, p = return_mapping(strain(fine))
    idx = torch.arange(0, len(fine), substeps)
    y_true = sigma[:, idx, None]
    y = y_true + noise * torch.randn(y_true.shape, generator=gen, dtype=torch.float64)
    h = 1e-6
    rate = (strain(t + h) - strain(t - h)) / (2 * h)
    x = torch.stack([strain(t), rate], -1)
    return Split(t=t, x=x, y=y, y_true=y_true, h_true=torch.stack([ep[:, idx], al[:, idx], p[:, idx]], -1))


def elastoplastic(seed=0, num_train=16, num_test=16, num_extrapolation=16, num_times=81, t_end=4.0, noise=0.03):
    """The ``elastoplastic`` problem (see module docstring for equations, units and parameter values).

    :param int seed: seed of the strain histories and the noise.
    :param int num_train: training trajectories (likewise ``num_test``, ``num_extrapolation``).
    :param int num_times: observation times on ``[0, t_end]``.
    :param float noise: observation noise std.
    :rtype: Problem
    """
    return Problem.simulated(
        _simulate, seed, (num_train, num_test, num_extrapolation), t_end, num_times, (1.5, 3.0), (3.5, 4.5), noise,
        name="elastoplastic", description=__doc__, obs_names=("stress",), input_names=("strain", "strain_rate"),
        state_names=("plastic_strain", "back_stress", "accumulated_plastic_strain"), time_unit="",
        model_kwargs={"hidden_dim": 3, "R_hidden": (32,), "Z_hidden": (), "scale": "learned", "scale_init": noise,
                      "init": "zero"},
    )
