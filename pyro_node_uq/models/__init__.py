"""Pyro process models: the NODE data model, its hierarchical and grey-box forms, and the SDE-BNN."""
from .greybox import GreyBoxNODEModel
from .hierarchical import HierarchicalNODEModel
from .node import NODEModel, UnitData, init_to_glorot
from .protocol import PlainModel, ProcessModel
from .sdebnn import SDEBNN, BottleneckDrift
from .structures import STRUCTURES, Structure, get_structure

__all__ = [
           "SDEBNN",
           "STRUCTURES",
           "BottleneckDrift",
           "GreyBoxNODEModel",
           "HierarchicalNODEModel",
           "NODEModel",
           "PlainModel",
           "ProcessModel",
           "Structure",
           "UnitData",
           "get_structure",
           "init_to_glorot",
]
