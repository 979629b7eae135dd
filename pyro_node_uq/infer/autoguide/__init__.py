"""Autoguides: the Langevin score-hypernetwork guide."""
from .langevin import AutoLangevin
from .score_net import PerSiteScore, ScoreMLP

__all__ = ["AutoLangevin", "PerSiteScore", "ScoreMLP"]
