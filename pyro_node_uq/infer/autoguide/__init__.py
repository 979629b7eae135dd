"""Autoguides: the Langevin score-hypernetwork guide and layer-wise stochastic guides."""
from .langevin import AutoLangevin
from .langevin_mixture import AutoLangevinMixture
from .layerwise import AutoLayerwise
from .score_net import PerSiteScore, ScoreMLP

__all__ = ["AutoLangevin", "AutoLangevinMixture", "AutoLayerwise", "PerSiteScore", "ScoreMLP"]
