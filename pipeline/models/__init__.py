"""Multi-task ranking models (CTR, CVR, value): networks that own their estimates and losses,
the one registry of their names, and the loss weightings that add the losses up.

The names below are imported on first use (PEP 562), so that ``pipeline.models.spec`` and
``pipeline.models.registry``, which a conf needs, load without torch.
"""
import importlib

_HOMES = {
    "RankingModel": "base", "output_priors": "base",
    "MODELS": "registry", "build_model": "registry", "model_class": "registry",
    "Inputs": "spec", "ModelSpec": "spec",
    "LossWeighting": "weighting", "make_weighting": "weighting",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'pipeline.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.models.{_HOMES[name]}"), name)
