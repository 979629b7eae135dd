"""Pyro process models: the NODE data model and the SDE-BNN."""
from .protocol import PlainModel, ProcessModel
from .hierarchical import HierarchicalNODEModel
from .node import NODEModel, init_to_glorot
from .greybox import GreyBoxNODEModel
from .structures import STRUCTURES, Structure, get_structure
from .sdebnn import SDEBNN, BottleneckDrift

__all__ = ["BottleneckDrift", "GreyBoxNODEModel", "HierarchicalNODEModel", "NODEModel", "PlainModel", "ProcessModel", "SDEBNN", "STRUCTURES", "Structure",
           "get_structure", "init_to_glorot"]
