"""Three processes the package does not ship, simulated here as user data for benchmarks: a forced Duffing
oscillator and a forced predator-prey system (one observed, one hidden state each) and a continuously fed reaction
network with a reversible and a second-order step (a reaction network unlike ``chemical``'s consecutive first-order
chain).

    duffing:  x'' = -delta x' - alpha x - beta x^3 + u(t);  observed x, hidden v = x';  input u
              delta = 0.3, alpha = 1.0, beta = 0.5; u = A * (3 random sines, 0.05-0.3 Hz), A ~ U(0.5, 1.0) for
              train/test, U(1.3, 1.6) for extrapolation; 41 times over 12 s; noise std 0.03.
    fed_dimer: A <-> B (k1 = 0.8, k-1 = 0.3), 2 B -> C (k2 = 0.6), fed with A at concentration 1 at the dilution
              rate D(t) = 0.2 + A_D * (3 random sines, 0.05-0.3 cycles/h) >= 0;  observed A and C, hidden B; input
              D; A_D ~ U(0.05, 0.15) for train/test, U(0.17, 0.19) for extrapolation; 41 times over 10 h;
              noise std 0.02.
    predprey: x' = x (1 + u(t)) - x y,  y' = x y - y  (prey x observed, predator y hidden, from x = 1.5, y = 0.7);
              input u = A * (3 random sines, 0.05-0.3 Hz), A ~ U(0.2, 0.4) for train/test, U(0.5, 0.6) for
              extrapolation; 41 times over 15 time units; noise std 0.02.

``NAME_learned`` is the same problem with the model's noise scale learned (``scale="learned"``), as a user who
brings the data without knowing its noise level fits it (the comparison's default for user data).

All return :class:`~pyro_node_uq.data.Problem` s with a recommended NODE (``model_kwargs``) and true hidden
states, like the shipped problems.
"""
import dataclasses

import torch
import torchdiffeq

from pyro_node_uq.data import Problem, Split, random_sines

__all__ = ["SIMULATED", "duffing", "fed_dimer", "predprey"]


def _solve(rhs, y0, t):
    return torchdiffeq.odeint(rhs, y0, t, rtol=1e-9, atol=1e-10).movedim(0, 1)


def _forced_split(field, z0, n, amplitude, t, noise, gen):
    """Trajectories of a two-state system ``(x, v)' = field(x, v, u(t))`` from ``z0`` driven by random sines ``u``
    (the input), the first state observed with noise."""
    force = random_sines(n, amplitude, (0.05, 0.3), generator=gen)
    states = _solve(lambda s, z: field(z[:, 0], z[:, 1], force(s)), torch.tensor(z0, dtype=torch.float64).expand(n, 2),
                    t)
    y_true = states[..., :1]
    y = y_true + noise * torch.randn(y_true.shape, generator=gen, dtype=torch.float64)
    return Split(t=t, x=force(t)[..., None], y=y, y_true=y_true, h_true=states)


def _duffing_split(n, amplitude, t, noise, gen):
    return _forced_split(lambda x, v, u: torch.stack([v, -0.3 * v - x - 0.5 * x ** 3 + u], -1), (0.0, 0.0), n,
                         amplitude, t, noise, gen)


def duffing(seed=0, num_train=16, num_test=16, num_extrapolation=16, num_times=41, t_end=12.0, noise=0.03):
    """The forced Duffing oscillator (see the module docstring)."""
    return Problem.simulated(
        _duffing_split, seed, (num_train, num_test, num_extrapolation), t_end, num_times, (0.5, 1.0), (1.3, 1.6),
        noise, name="duffing", description="forced Duffing oscillator, x observed, x' hidden", obs_names=("x",),
        input_names=("force",), state_names=("x", "v"), time_unit="s",
        model_kwargs={"hidden_dim": 2, "R_hidden": (32,), "Z_hidden": None, "scale": noise, "init": "zero"})


def _dimer_split(n, amplitude, t, noise, gen):
    rate = random_sines(n, amplitude, (0.05, 0.3), offset=0.2, generator=gen)

    def rhs(s, c):
        d = rate(s)
        a, b, cc = c[:, 0], c[:, 1], c[:, 2]
        r1, r2 = 0.8 * a - 0.3 * b, 0.6 * b * b
        return torch.stack([d * (1.0 - a) - r1, -d * b + r1 - 2 * r2, -d * cc + r2], -1)

    c0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(n, 3)
    states = _solve(rhs, c0, t)
    h_true = states[..., [0, 2, 1]]  # [A, C, B]: observed first, hidden last
    y_true = h_true[..., :2]
    y = y_true + noise * torch.randn(y_true.shape, generator=gen, dtype=torch.float64)
    x = ((rate(t) - 0.2) / 0.1)[..., None]
    return Split(t=t, x=x, y=y, y_true=y_true, h_true=h_true)


def fed_dimer(seed=0, num_train=16, num_test=16, num_extrapolation=16, num_times=41, t_end=10.0, noise=0.02):
    """The fed reversible/dimerising reaction network (see the module docstring)."""
    return Problem.simulated(
        _dimer_split, seed, (num_train, num_test, num_extrapolation), t_end, num_times, (0.05, 0.15), (0.17, 0.19),
        noise, name="fed_dimer", description="fed A <-> B, 2B -> C; A and C observed, B hidden",
        obs_names=("A", "C"), input_names=("dilution",), state_names=("A", "C", "B"), time_unit="h",
        model_kwargs={"hidden_dim": 3, "R_hidden": (32,), "Z_hidden": None, "scale": noise,
                          "init": torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)})


def _predprey_split(n, amplitude, t, noise, gen):
    return _forced_split(lambda x, y, u: torch.stack([x * (1.0 + u) - x * y, x * y - y], -1), (1.5, 0.7), n,
                         amplitude, t, noise, gen)


def predprey(seed=0, num_train=16, num_test=16, num_extrapolation=16, num_times=41, t_end=15.0, noise=0.02):
    """The forced predator-prey system (see the module docstring)."""
    return Problem.simulated(
        _predprey_split, seed, (num_train, num_test, num_extrapolation), t_end, num_times, (0.2, 0.4), (0.5, 0.6),
        noise, name="predprey", description="forced predator-prey, prey observed, predator hidden",
        obs_names=("prey",), input_names=("growth",), state_names=("prey", "predator"), time_unit="",
        model_kwargs={"hidden_dim": 2, "R_hidden": (32,), "Z_hidden": None, "scale": noise,
                      "init": torch.tensor([1.5, 0.7], dtype=torch.float64)})


def _learned(simulate):
    """``simulate`` with the model's noise scale learned: the problem as user data of unknown noise level."""
    def problem(seed=0, **kwargs):
        p = simulate(seed=seed, **kwargs)
        return dataclasses.replace(p, name=p.name + "_learned", model_kwargs={**p.model_kwargs, "scale": "learned"})
    problem.__doc__ = f"{simulate.__name__} with a learned noise scale"
    return problem


SIMULATED = {"duffing": duffing, "fed_dimer": fed_dimer, "predprey": predprey}
SIMULATED.update({name + "_learned": _learned(fn) for name, fn in list(SIMULATED.items())})
