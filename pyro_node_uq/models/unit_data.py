"""The units (trajectories) of one NODE model call, as the model's component hooks see them."""
from typing import NamedTuple

import torch

__all__ = ["UnitData"]


class UnitData(NamedTuple):
    """The units (trajectories) of one model call as the component hooks of :class:`~pyro_node_uq.models.NODEModel` see them: already
    restricted to the plate's indices (all ``N`` units, or the ``M`` of a subsampled plate) and checked.

    :ivar torch.Tensor index: the plate's indices of these units, ``(M,)``.
    :ivar torch.Tensor t: observation times ``(T,)``, or these units' own ``(M, T)``.
    :ivar torch.Tensor x: these units' inputs ``(M, Tx, input_dim)``, or ``None``.
    :ivar torch.Tensor x_times: sample times of ``x`` when they differ from ``t``, or ``None``.
    :ivar torch.Tensor covariates: these units' covariates ``(M, covariate_dim)`` in the data's dtype, or ``None``
        (always ``None`` for a model with ``covariate_dim=0``).
    :ivar bool new_units: the units were not fitted (their effects are drawn from the population).
    """

    index: torch.Tensor
    t: torch.Tensor
    x: torch.Tensor
    x_times: torch.Tensor
    covariates: torch.Tensor
    new_units: bool
