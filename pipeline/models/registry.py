"""The one list of model names: configs, the command line and the docs take them from here."""
from __future__ import annotations

from pipeline.models.aitm import AITM
from pipeline.models.base import RankingModel
from pipeline.models.esmm import DCMT, ESCM2DR, ESCM2IPS, ESMM
from pipeline.models.linear import LogisticRegression
from pipeline.models.mixture import MMoE, OMoE, PLE
from pipeline.models.shared_bottom import SharedBottom
from pipeline.models.single_task import CtrDNN, NaiveCvrDNN, ReweightedCtrDNN
from pipeline.models.spec import Inputs, ModelSpec

MODELS: dict[str, type[RankingModel]] = {cls.name: cls for cls in (
    LogisticRegression, CtrDNN, NaiveCvrDNN, ReweightedCtrDNN, SharedBottom, ESMM, ESCM2IPS, ESCM2DR, DCMT,
    OMoE, MMoE, PLE, AITM)}


def build_model(spec: ModelSpec, inputs: Inputs) -> RankingModel:
    """The network ``spec.name`` (a key of ``MODELS``; the spec checked it) for ``inputs``."""
    return MODELS[spec.name](spec, inputs)
