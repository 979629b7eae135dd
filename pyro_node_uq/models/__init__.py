"""Pyro process models: the NODE data model."""
from .node import NODEModel, init_to_glorot

__all__ = ["NODEModel", "init_to_glorot"]
