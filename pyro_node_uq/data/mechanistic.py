"""Units simulated from a mechanistic structure with log-normal per-unit parameters: data with a known truth for
grey-box models (does the correction stay near zero when the mechanism is right, does it learn what a wrong
backbone misses)."""
import pyro
import torch
from pyro import poutine

from ..distributions.doses import DoseSchedule
from .units import Units, units_problem

__all__ = ["mechanistic_problem", "mechanistic_units"]


def mechanistic_units(structure, typical, omega, noise, num_units=24, num_obs=8, t_end=24.0, dose=100.0,
                      dose_times=(0.0,), dose_state=None, rate=0.0, seed=0):
    """Simulate units from :class:`~pyro_node_uq.models.GreyBoxNODEModel` ``(structure)`` without a correction.

    Each unit gets the doses ``dose`` at ``dose_times`` into ``dose_state`` (default: the structure's), parameters
    ``theta_i = typical exp(omega * z_i)`` and ``num_obs`` sampling times of its own (log-spaced over ``(0,
    t_end]`` with a random jitter), observed with additive Gaussian noise of std ``noise``.

    :param structure: a structure or its name (see :data:`~pyro_node_uq.models.structures.STRUCTURES`).
    :param dict typical: every parameter's typical value.
    :param omega: the log-scale spread of the parameters, in the structure's parameter order (a float for all).
    :param float noise: observation noise std.
    :param float rate: the doses' rate: 0 a bolus, > 0 an infusion, -1 / -2 an infusion whose rate / duration is
        the parameter ``R<n>`` / ``D<n>`` of ``typical`` (:mod:`~pyro_node_uq.models.dose_parameters`).
    :returns: :class:`~pyro_node_uq.data.Units` (``eta_true``: the units' log-parameter deviations).

    Example::

        >>> u = mechanistic_units("one_compartment_oral", {"CL": 2.0, "V": 30.0, "ka": 1.5}, 0.3, 0.2,
        ...                       num_units=4, num_obs=5)
        >>> len(u), int(u.mask.sum()), u.eta_true.shape
        (4, 20, torch.Size([4, 3]))
    """
    from ..models import GreyBoxNODEModel
    from ..models.dose_parameters import dose_parameter_names
    from ..models.structures import get_structure

    dt = torch.float64
    state = get_structure(structure).dose_state if dose_state is None else dose_state
    doses = DoseSchedule.from_lists([list(dose_times)] * num_units, [[float(dose)] * len(dose_times)] * num_units,
                                    [[state] * len(dose_times)] * num_units,
                                    [[float(rate)] * len(dose_times)] * num_units, dtype=dt)
    model = GreyBoxNODEModel(structure, random_effects=None, scale=float(noise), solver={"rtol": 1e-8, "atol": 1e-8},
                             dose_parameters={k: typical[k] for k in dose_parameter_names(doses)})
    names = model.structure.param_names
    gen = torch.Generator().manual_seed(seed)
    nominal = torch.logspace(-1, 0, num_obs, dtype=dt) * t_end
    times = (nominal * torch.exp(0.15 * torch.randn(num_units, num_obs, generator=gen, dtype=dt))).clamp(max=t_end)
    times = times.sort(-1).values
    grid = torch.unique(times)
    mask = (grid[None, None, :] == times[..., None]).any(1)
    eta_z = torch.randn(num_units, len(names), generator=gen, dtype=dt)
    omega = torch.as_tensor(omega, dtype=dt).expand(len(names))
    values = {f"{k}_pop": torch.tensor(float(typical[k]), dtype=dt) for k in names}
    values.update(omega=omega.clone(), eta_z=eta_z)
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        tr = poutine.trace(poutine.condition(model, values)).get_trace(grid, None, None, num_trajectories=num_units,
                                                                       doses=doses)
    mean = tr.nodes["y_mean"]["value"]
    y = mean + noise * torch.randn(mean.shape, generator=gen, dtype=dt)
    y = torch.where(mask[..., None], y, torch.zeros_like(y))
    return Units(t=grid, x=None, y=y, mask=mask, y_true=mean, ids=torch.arange(num_units), doses=doses,
                 eta_true=omega * eta_z)


def mechanistic_problem(structure, typical, omega, noise, test_fraction=0.25, time_fraction=2 / 3, num_folds=None,
                        fold=0, **simulation):
    """:func:`mechanistic_units` held out as new units and later observations
    (:func:`~pyro_node_uq.data.units.units_problem`), named after the structure.

    :param simulation: :func:`mechanistic_units`' other options (``num_units``, ``dose_times``, ``seed``...).
    """
    units = mechanistic_units(structure, typical, omega, noise, **simulation)
    name = f"simulated_{structure if isinstance(structure, str) else structure.name}"
    return units_problem(name, mechanistic_problem.__doc__, units, test_fraction, time_fraction,
                         simulation.get("seed", 0), num_folds, fold, obs_names=("concentration",), time_unit="h",
                         noise_scale=float(noise), model_kwargs={})
