"""Pyro process models: the NODE data model and the SDE-BNN."""
from .protocol import PlainModel, ProcessModel
from .hierarchical import HierarchicalNODEModel
from .node import NODEModel, UnitData, init_to_glorot
from .sdebnn import SDEBNN, BottleneckDrift

__all__ = ["BottleneckDrift", "HierarchicalNODEModel", "NODEModel", "PlainModel", "ProcessModel", "SDEBNN", "UnitData", "init_to_glorot"]
