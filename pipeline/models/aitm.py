"""AITM: Adaptive Information Transfer Multi-task network (Xi et al., KDD 2021).

The conversion head is trained on conversions over all exposures, so it estimates pCTCVR
and is named ``"ctcvr"``; pCVR = pCTCVR / pCTR is derived outside the network.

Shape notation: B batch, F categorical fields, N numeric features, H hidden dim.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from pipeline.models.base import Batch, RankingModel, bce, value_loss, value_output
from pipeline.models.modules import MLP, InformationTransfer, SharedInput, Tower
from pipeline.models.spec import Inputs, ModelSpec


class AITM(RankingModel):
    """Per-task encoders over shared embeddings, chained click -> conversion (-> value).

    Each task ``t`` encodes the shared input with its own MLP of ``spec.bottom_hidden`` into
    ``q_t``. The first task uses ``z_1 = q_1``; each later task mixes the transferred ``z_{t-1}``
    and its own ``q_t`` with an attention (``InformationTransfer``) into ``z_t``. A tower of
    ``spec.tower_hidden`` turns each ``z_t`` into the task output. The optional value task comes
    last in the chain, since a value exists only after a conversion.

    Losses: ``"ctr"`` and ``"ctcvr"`` BCE over all exposures (pCTCVR has its own logit),
    ``"calibration"`` mean(relu(pCTCVR - pCTR)) since converting cannot be likelier than
    clicking, and ``"value"`` as in every multi-task model.

    Args:
        spec: hyper-parameters (``cvr_mode`` is not used: AITM is entire-space).
        inputs: the shape of the encoded input.
    """

    name = "aitm"

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs, ("ctr", "ctcvr", *value_output(spec)))
        self.input = SharedInput(inputs.cardinalities, spec.embedding_dim, inputs.num_numeric, spec.interaction)
        self.encoders = nn.ModuleDict(
            {task: MLP(self.input.output_dim, spec.bottom_hidden, spec.dropout) for task in self.outputs})
        dim = self.encoders["ctr"].output_dim
        self.transfers = nn.ModuleDict({task: InformationTransfer(dim, spec.dropout) for task in self.outputs[1:]})
        self.towers = nn.ModuleDict({task: Tower(dim, spec.tower_hidden, spec.dropout) for task in self.outputs})

    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Run the task chain.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float numeric features.

        Returns:
            ``{"ctr", "ctcvr"(, "value"): [B] logits}``.
        """
        shared = self.input(cat, num)  # [B, I]
        logits = {}
        previous = None
        for task in self.outputs:
            z = self.encoders[task](shared)  # [B, H]
            if previous is not None:
                z = self.transfers[task](previous, z)  # [B, H]
            logits[task] = self.towers[task](z)  # [B]
            previous = z
        return logits

    @property
    def loss_names(self) -> tuple[str, ...]:
        return ("ctr", "ctcvr", "calibration", *value_output(self.spec))

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        p = self.probabilities(logits)
        out = {"ctr": bce(logits["ctr"], batch["click"]), "ctcvr": bce(logits["ctcvr"], batch["conversion"]),
               "calibration": torch.relu(p["p_ctcvr"] - p["p_ctr"]).mean()}  # [B] -> scalar
        if "value" in logits:
            out["value"] = value_loss(logits["value"], batch)
        return out
