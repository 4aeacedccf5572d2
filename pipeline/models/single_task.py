"""Single-task DNN baselines: ``ctr_dnn``, ``cvr_naive`` (CVR trained on clicks only, the model
ESMM is compared with) and ``reweight`` (CTR with conversion- and value-weighted samples).

Shape notation: B batch, F categorical fields, N numeric features.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.base import Batch, RankingModel, bce, masked_bce
from pipeline.models.modules import MLP, SharedInput, Tower
from pipeline.models.spec import Inputs, ModelSpec


class SingleTaskDNN(RankingModel):
    """Shared input, an MLP of ``spec.bottom_hidden``, one output unit named ``task``.

    Args:
        spec: hyper-parameters (``tasks`` and ``tower_hidden`` are not used).
        inputs: the shape of the encoded input.
    """

    task: str

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs, (self.task,))
        self.input = SharedInput(inputs.cardinalities, spec.embedding_dim, inputs.num_numeric, spec.interaction)
        self.bottom = MLP(self.input.output_dim, spec.bottom_hidden, spec.dropout)
        self.towers = nn.ModuleDict({self.task: Tower(self.bottom.output_dim, (), spec.dropout)})

    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """``{task: [B] logits}``."""
        return {self.task: self.towers[self.task](self.bottom(self.input(cat, num)))}

    @property
    def loss_names(self) -> tuple[str, ...]:
        return (self.task,)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last bottom layer (the embedding table when the bottom has no layer)."""
        return self.bottom.last_layer_parameters() or self.embedding_parameters()


class CtrDNN(SingleTaskDNN):
    """pCTR alone: BCE on clicks over all exposures."""

    name = "ctr_dnn"
    task = "ctr"

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {"ctr": bce(logits["ctr"], batch["click"])}


class NaiveCvrDNN(SingleTaskDNN):
    """pCVR trained on clicked exposures only: BCE on conversions over the click space. It is
    applied to every exposure at scoring time, which is the sample-selection bias ESMM removes."""

    name = "cvr_naive"
    task = "cvr"

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {"cvr": masked_bce(logits["cvr"], batch["conversion"], batch["click"])}


class ReweightedCtrDNN(SingleTaskDNN):
    """pCTR with sample weights ``1 + reweight_conversion * conversion + reweight_value *
    log1p(conversion_value)``, normalized by the sum of the weights: clicks that convert, and
    those worth more, count more."""

    name = "reweight"
    task = "ctr"

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        weight = (1.0 + self.spec.reweight_conversion * batch["conversion"]
                  + self.spec.reweight_value * torch.log1p(batch["conversion_value"]))  # [B]
        per_row = F.binary_cross_entropy_with_logits(logits["ctr"], batch["click"], reduction="none")  # [B]
        return {"ctr": (weight * per_row).sum() / weight.sum()}
