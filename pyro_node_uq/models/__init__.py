"""Pyro process models: the NODE data model and the SDE-BNN."""
from .hierarchical import HierarchicalNODEModel
from .node import NODEModel, init_to_glorot
from .sdebnn import SDEBNN, BottleneckDrift

__all__ = ["BottleneckDrift", "HierarchicalNODEModel", "NODEModel", "SDEBNN", "init_to_glorot"]
