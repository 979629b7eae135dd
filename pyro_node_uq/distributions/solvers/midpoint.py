"""The explicit midpoint method."""
from .base import ExplicitRK, Tableau

__all__ = ["Midpoint"]


class Midpoint(ExplicitRK):
    """The explicit midpoint method, second order: ``y + h f(t + h/2, y + h/2 f(t, y))``.

    Example::

        >>> import torch
        >>> Midpoint().step(lambda t, y: -y, torch.ones(1), torch.tensor(0.0), 0.1)   # 1 - h + h^2 / 2
        tensor([0.9050])
    """

    name = "midpoint"
    torchdiffeq = "midpoint"
    order = 2
    tableau = Tableau(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0))
