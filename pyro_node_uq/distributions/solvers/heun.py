"""Heun's method (the explicit trapezoidal rule)."""
from .base import ExplicitRK, Tableau

__all__ = ["Heun"]


class Heun(ExplicitRK):
    """Heun's method, second order: an Euler step predicts the step's end, and the update averages the slopes at
    both ends, ``y + h/2 (f(t, y) + f(t + h, y + h f(t, y)))``.  Solved on the fast fixed-step path (with the
    hand-written gradient); ``torchdiffeq`` solves it as ``"heun2"`` (step_size, adjoint).

    Example::

        >>> import torch
        >>> Heun().step(lambda t, y: -y, torch.ones(1), torch.tensor(0.0), 0.1)   # 1 - h + h^2 / 2
        tensor([0.9050])

    It integrates a time-dependent field with the trapezoidal rule, where the midpoint method uses the midpoint
    rule (y' = t^2 over one step of 1 from 0: exactly 1/3; the trapezoid gives 1/2, the midpoint 1/4)::

        >>> Heun().step(lambda t, y: t ** 2, torch.zeros(1), torch.tensor(0.0), 1.0)
        tensor([0.5000])
    """

    name = "heun"
    torchdiffeq = "heun2"
    order = 2
    tableau = Tableau(c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5))
