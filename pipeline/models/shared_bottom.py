"""Multi-task networks with one head per task in ``spec.tasks``, and the shared-bottom one.

Shape notation: B batch, F categorical fields, N numeric features, H hidden dim.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from pipeline.models.base import Batch, RankingModel, bce, masked_bce, product_bce, value_loss, value_output
from pipeline.models.modules import MLP, SharedInput, Tower
from pipeline.models.spec import Inputs, ModelSpec


class MultiTaskModel(RankingModel):
    """A head per task in ``spec.tasks``, trained by ``spec.cvr_mode``.

    Losses: ``"ctr"`` BCE(pCTR, click) over all exposures; with ``cvr_mode="entire_space"``
    ``"ctcvr"`` BCE(pCTR * pCVR, conversion) over all exposures (the CVR head learns only through
    the product, as in ESMM), with ``"masked"`` ``"cvr"`` BCE(pCVR, conversion) over clicked
    exposures; ``"value"`` MSE(value, log1p(conversion_value)) over converted exposures.
    """

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs, spec.tasks)

    @property
    def loss_names(self) -> tuple[str, ...]:
        cvr = ({"entire_space": "ctcvr", "masked": "cvr"}[self.spec.cvr_mode],) if "cvr" in self.outputs else ()
        return ("ctr", *cvr, *value_output(self.spec))

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        out = {"ctr": bce(logits["ctr"], batch["click"])}
        if "ctcvr" in self.loss_names:
            out["ctcvr"] = product_bce(self.probabilities(logits)["p_ctcvr"], batch["conversion"])
        if "cvr" in self.loss_names:
            out["cvr"] = masked_bce(logits["cvr"], batch["conversion"], batch["click"])
        if "value" in self.outputs:
            out["value"] = value_loss(logits["value"], batch)
        return out


class SharedBottom(MultiTaskModel):
    """Shared input and MLP, then one tower per task.

    Args:
        spec: hyper-parameters.
        inputs: the shape of the encoded input.
    """

    name = "shared_bottom"

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs)
        self.input = SharedInput(inputs.cardinalities, spec.embedding_dim, inputs.num_numeric, spec.interaction)
        self.bottom = MLP(self.input.output_dim, spec.bottom_hidden, spec.dropout)
        self.towers = nn.ModuleDict(
            {task: Tower(self.bottom.output_dim, spec.tower_hidden, spec.dropout) for task in self.outputs})

    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """``{task: [B] logits}`` for each task in ``spec.tasks``."""
        shared = self.bottom(self.input(cat, num))  # [B, H]
        return {task: tower(shared) for task, tower in self.towers.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last shared bottom layer (the embedding table when the bottom has no layer)."""
        return self.bottom.last_layer_parameters() or self.embedding_parameters()
