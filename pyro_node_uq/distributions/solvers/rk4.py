"""The classical fourth-order Runge-Kutta method in its 3/8-rule form (``torchdiffeq``'s ``"rk4"``)."""
from .base import ExplicitRK, Tableau

__all__ = ["RK4"]


class RK4(ExplicitRK):
    """Kutta's 3/8-rule fourth-order method, the tableau of ``torchdiffeq``'s fixed-grid ``"rk4"`` (so both
    back-ends agree step for step).

    Example::

        >>> import torch
        >>> y = RK4().step(lambda t, y: -y, torch.ones(1, dtype=torch.float64), torch.tensor(0.0), 0.1)
        >>> round(float(y), 10)                 # 1 - h + h^2/2 - h^3/6 + h^4/24
        0.9048375
    """

    name = "rk4"
    torchdiffeq = "rk4"
    order = 4
    tableau = Tableau(c=(0.0, 1 / 3, 2 / 3, 1.0), a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
                      b=(0.125, 0.375, 0.375, 0.125))
