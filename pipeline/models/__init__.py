"""Multi-task ranking models (CTR, CVR, value): networks that own their estimates and losses,
the one registry of their names, and the loss weightings that add the losses up.
"""
from pipeline.models.base import RankingModel, output_priors
from pipeline.models.registry import MODELS, build_model
from pipeline.models.spec import Inputs, ModelSpec
from pipeline.models.weighting import LossWeighting, make_weighting

__all__ = [
    "MODELS",
    "Inputs",
    "LossWeighting",
    "ModelSpec",
    "RankingModel",
    "build_model",
    "make_weighting",
    "output_priors",
]
