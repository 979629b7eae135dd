"""The explicit Euler method."""
from .base import ExplicitRK, Tableau

__all__ = ["Euler"]


class Euler(ExplicitRK):
    """The explicit Euler method, first order: ``y + h f(t, y)``.

    Example::

        >>> import torch
        >>> Euler().step(lambda t, y: -y, torch.ones(1), torch.tensor(0.0), 0.1)
        tensor([0.9000])
    """

    name = "euler"
    torchdiffeq = "euler"
    order = 1
    tableau = Tableau(c=(0.0,), a=((),), b=(1.0,))
