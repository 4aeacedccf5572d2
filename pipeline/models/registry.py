"""Model names, as used in configs and on the command line, and how to build each."""
from __future__ import annotations

import functools
from typing import Callable

from torch import nn

from pipeline.models.aitm import AITM
from pipeline.models.mixture import PLE, MixtureOfExperts
from pipeline.models.shared_bottom import ESMM, SharedBottom
from pipeline.models.single_task import SingleTaskDNN
from pipeline.models.spec import ModelSpec

MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {
    "ctr_dnn": functools.partial(SingleTaskDNN, task="ctr"),
    "cvr_naive": functools.partial(SingleTaskDNN, task="cvr"),
    "reweight": functools.partial(SingleTaskDNN, task="ctr"),
    "shared_bottom": SharedBottom,
    "esmm": ESMM,
    "omoe": functools.partial(MixtureOfExperts, gate_per_task=False),
    "mmoe": functools.partial(MixtureOfExperts, gate_per_task=True),
    "ple": PLE,
    "aitm": AITM,
}


def check_model_name(name: str) -> None:
    """Raise ValueError listing the known names unless ``name`` is one of them."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    """Build the network registered as ``name``.

    Args:
        name: a key of ``MODELS``.
        spec: model hyper-parameters.

    Returns:
        An ``nn.Module`` whose ``forward(cat [B, F], num [B, N])`` returns a dict of [B] logits
        (keys in its ``outputs`` attribute) and which has ``shared_parameters()``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    check_model_name(name)
    return MODELS[name](spec)
