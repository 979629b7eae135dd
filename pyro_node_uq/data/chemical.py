"""Consecutive reactions A -> B -> C driven by a temperature history through Arrhenius rates.

    d[A]/dt = -k1(T) [A]
    d[B]/dt =  k1(T) [A] - k2(T) [B]          (B is never observed)
    d[C]/dt =  k2(T) [B]
    k_i(T)  = k_i,ref * exp(-(E_i / R) (1/T - 1/T_ref))

Units: time in hours, concentrations in mol/L (A0 = 1, B0 = C0 = 0), temperature in K.
Parameters: k1,ref = 0.5 1/h, k2,ref = 0.25 1/h at T_ref = 350 K, E1 = 60 kJ/mol, E2 = 90 kJ/mol.
Temperature: T(t) = 350 K + A * (sum of 3 random sines, 0.05-0.3 cycles/h), A ~ U(10, 30) K for train/test and
U(35, 50) K for the extrapolation split (unseen amplitudes).  Observed: [A] and [C] at 41 times over 10 h, with
Gaussian noise of std 0.02 mol/L.  Model input: x = (T - 350 K) / 25 K.
"""
import torch
import torchdiffeq

from .problem import Problem, Split, random_sines

__all__ = ["chemical"]

R_GAS = 8.314e-3  # kJ / (mol K)
K_REF, E_ACT, T_REF = (0.5, 0.25), (60.0, 90.0), 350.0


def _simulate(n, amplitude, t, noise, gen):
    temp = random_sines(n, amplitude, (0.05, 0.3), offset=T_REF, generator=gen)

    def rhs(s, c):
        T = temp(s)
        k1, k2 = (kr * torch.exp(-(e / R_GAS) * (1 / T - 1 / T_REF)) for kr, e in zip(K_REF, E_ACT))
        a, b = c[:, 0], c[:, 1]
        return torch.stack([-k1 * a, k1 * a - k2 * b, k2 * b], -1)

    c0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(n, 3)
    states = torchdiffeq.odeint(rhs, c0, t, rtol=1e-9, atol=1e-10).movedim(0, 1)  # (n, T, [A, B, C])
    h_true = states[..., [0, 2, 1]]  # [A, C, B]: observed first, hidden last
    y_true = h_true[..., :2]
    y = y_true + noise * torch.randn(y_true.shape, generator=gen, dtype=torch.float64)
    x = ((temp(t) - T_REF) / 25.0)[..., None]
    return Split(t=t, x=x, y=y, y_true=y_true, h_true=h_true)


def chemical(seed=0, num_train=16, num_test=16, num_extrapolation=16, num_times=41, t_end=10.0, noise=0.02):
    """The ``chemical`` problem (see module docstring for equations, units and parameter values).

    :param int seed: seed of the temperature histories and the noise.
    :param int num_train: training trajectories (likewise ``num_test``, ``num_extrapolation``).
    :param int num_times: observation times on ``[0, t_end]`` hours.
    :param float noise: observation noise std in mol/L.
    :rtype: Problem
    """
    return Problem.simulated(
        _simulate, seed, (num_train, num_test, num_extrapolation), t_end, num_times, (10.0, 30.0), (35.0, 50.0), noise,
        name="chemical", description=__doc__, obs_names=("A", "C"), input_names=("temperature",),
        state_names=("A", "C", "B"), time_unit="h",
        model_kwargs={"hidden_dim": 3, "R_hidden": (32,), "Z_hidden": None, "scale": noise,
                          "init": torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)},
    )
