"""Batched functional networks whose weights carry leading particle dimensions."""
from .mlp import ACTIVATIONS, BatchedMLP, batched_linear
from .params import (
    flatten_params,
    resolve_prior_scale,
    sample_params,
    select_sites,
    unflatten_params,
)

__all__ = [
    "ACTIVATIONS",
    "BatchedMLP",
    "batched_linear",
    "flatten_params",
    "resolve_prior_scale",
    "sample_params",
    "select_sites",
    "unflatten_params",
]
