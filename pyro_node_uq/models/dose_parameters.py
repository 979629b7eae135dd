"""Modelled infusion rates and durations as named structure parameters (NONMEM's ``R<n>`` and ``D<n>``).

A dose with rate code -1 (:data:`~pyro_node_uq.distributions.doses.MODELLED_RATE`) into state ``n - 1`` of a
:class:`~pyro_node_uq.models.structures.Structure` is an infusion at the rate ``R<n>``; one with code -2
(:data:`~pyro_node_uq.distributions.doses.MODELLED_DURATION`) lasts ``D<n>``.  ``n`` is the 1-based index of the
dosed state in the structure's ``states`` (the central compartment is 1, a depot of an oral structure 2), the
numbering of the dose schedule's ``compartment`` plus one.  The parameters join the structure's own: positive,
log-normal, with a per-unit random effect like ``CL`` or ``V``, so every inference method infers them.
"""
import re

import torch

from ..distributions.doses import MODELLED_DURATION, MODELLED_RATE
from .structures import Structure

__all__ = ["dose_parameter_names", "modelled_infusions", "with_dose_parameters"]

_NAME = re.compile(r"^([RD])([1-9][0-9]*)$")
_CODES = {"R": MODELLED_RATE, "D": MODELLED_DURATION}


def dose_parameter_names(doses):
    """The parameter names the modelled infusions of ``doses`` need, sorted (``[]`` without any).

    :param ~pyro_node_uq.distributions.DoseSchedule doses: a dose schedule (or ``None``).

    Example::

        >>> from pyro_node_uq.distributions import DoseSchedule
        >>> dose_parameter_names(DoseSchedule.from_lists([[0.0, 1.0]], [[5.0, 5.0]], [[0, 1]], [[-2.0, -1.0]]))
        ['D1', 'R2']
    """
    if doses is None:
        return []
    names = set()
    for letter, code in _CODES.items():
        hit = doses.mask & (doses.rate == code)
        names |= {f"{letter}{c + 1}" for c in doses.compartment[hit].tolist()}
    return sorted(names)


def with_dose_parameters(structure, values):
    """``structure`` with the modelled rates / durations ``values`` as further parameters (same field, observation
    and closed form: the field ignores them, the solve reads them).

    :param Structure structure: the mechanistic structure.
    :param dict values: name (``"R<n>"`` or ``"D<n>"``, ``n`` a 1-based state index) -> typical value (> 0).
    :rtype: Structure
    :raises ValueError: a name of another form, of a state the structure lacks, or one it already has.

    Example::

        >>> from pyro_node_uq.models.structures import get_structure
        >>> with_dose_parameters(get_structure("one_compartment_iv"), {"D1": 2.0}).params
        {'CL': 1.0, 'V': 10.0, 'D1': 2.0}
    """
    values = dict(values or {})
    if not values:
        return structure
    for name in values:
        match = _NAME.match(str(name))
        if match is None or int(match.group(2)) > structure.hidden_dim or name in structure.params:
            raise ValueError(f"dose_parameters: expected names 'R<n>' (a modelled rate) or 'D<n>' (a modelled "
                             f"duration) with n in 1..{structure.hidden_dim} (the dosed state of "
                             f"{structure.states}, 1-based) and not a parameter of structure {structure.name!r} "
                             f"{structure.param_names}, got {name!r}")
    return Structure(structure.name, structure.field, structure.states, {**structure.params, **values},
                     structure.observe_fn, structure.obs_dim, structure.inputs, structure.solution,
                     structure.dose_state, structure.volumes)


def modelled_infusions(doses, theta, dose_scale=1.0, structure="the structure"):
    """The rate and end of every dose, the modelled ones' from the units' parameters ``theta``.

    :param ~pyro_node_uq.distributions.DoseSchedule doses: the units' doses (``N`` units, ``K`` doses).
    :param dict theta: parameter name -> the units' values ``batch + (N,)`` (holding ``R<n>`` / ``D<n>``).
    :param float dose_scale: the factor the model multiplied the amounts by; a modelled rate ``R<n>`` is in the
        data's amount units per time, so the infusion runs ``amount / R<n>`` whatever the factor.
    :param str structure: the structure's name, for the error.
    :returns: ``(rate, end)`` ``batch + (N, K)`` (:meth:`~pyro_node_uq.distributions.DoseSchedule.resolved`).
    :raises ValueError: naming a missing parameter.
    """
    names = dose_parameter_names(doses)
    missing = [n for n in names if n not in theta]
    if missing:
        raise ValueError(f"doses: modelled infusions need the parameters {missing} (R<n>: the rate, D<n>: the "
                         f"duration of a dose into state n), which {structure} lacks; give them as "
                         f"dose_parameters={{name: typical value}}")
    value = None
    for name in names:
        letter, n = _NAME.match(name).groups()
        hit = (doses.rate == _CODES[letter]) & (doses.compartment == int(n) - 1)
        p = theta[name][..., None] * (dose_scale if letter == "R" else 1.0)
        value = torch.where(hit, p, p.new_ones(()) if value is None else value)
    return doses.resolved(value)
