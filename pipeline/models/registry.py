"""The one list of model names: configs, the command line and the docs take them from here.

Torch-free, so that loading a conf or starting a command that trains nothing does not import
torch: a name maps to the module and class that build it, imported when a network is built.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.models.base import RankingModel
    from pipeline.models.spec import Inputs, ModelSpec

MODELS: dict[str, str] = {  # name -> "module.Class" in pipeline.models
    "lr": "linear.LogisticRegression",
    "ctr_dnn": "single_task.CtrDNN",
    "cvr_naive": "single_task.NaiveCvrDNN",
    "reweight": "single_task.ReweightedCtrDNN",
    "shared_bottom": "shared_bottom.SharedBottom",
    "esmm": "esmm.ESMM",
    "escm2_ips": "esmm.ESCM2IPS",
    "escm2_dr": "esmm.ESCM2DR",
    "dcmt": "esmm.DCMT",
    "omoe": "mixture.OMoE",
    "mmoe": "mixture.MMoE",
    "ple": "mixture.PLE",
    "aitm": "aitm.AITM",
}


def model_class(name: str) -> type[RankingModel]:
    """The class of the model ``name`` (a key of ``MODELS``)."""
    module, cls = MODELS[name].rsplit(".", 1)
    return getattr(importlib.import_module(f"pipeline.models.{module}"), cls)


def build_model(spec: ModelSpec, inputs: Inputs) -> RankingModel:
    """The network ``spec.name`` (a key of ``MODELS``; the spec checked it) for ``inputs``."""
    return model_class(spec.name)(spec, inputs)
