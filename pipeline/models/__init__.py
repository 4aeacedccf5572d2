"""Multi-task ranking networks (CTR, CVR, value), their objectives and loss weightings.

Networks return logits; ``probabilities`` and ``task_losses`` turn them into estimates and
losses, and a ``LossWeighting`` from ``make_weighting`` adds the losses up.
"""
from pipeline.models.objectives import loss_names, probabilities, task_losses
from pipeline.models.registry import MODELS, build_model
from pipeline.models.spec import ModelSpec
from pipeline.models.weighting import LossWeighting, make_weighting

__all__ = [
    "MODELS",
    "LossWeighting",
    "ModelSpec",
    "build_model",
    "loss_names",
    "make_weighting",
    "probabilities",
    "task_losses",
]
