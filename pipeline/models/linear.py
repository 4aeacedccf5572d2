"""``lr``: logistic regression on the encoded features, the wide floor every deep model must beat.

One weight per categorical value and per numeric feature, per head: a one-hot logistic
regression for pCTR over all exposures and one for pCVR over clicked exposures (the naive
click-space CVR model), with pCTCVR = pCTR * pCVR. On sparse logs such a model is hard to beat,
so the comparison table always shows when depth does not pay.

Shape notation: B batch, F categorical fields, N numeric features, H heads.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from pipeline.models.base import Batch, RankingModel, bce, masked_bce, value_loss, value_output
from pipeline.models.spec import Inputs, ModelSpec


class LogisticRegression(RankingModel):
    """Per head: the sum of one weight per field value, a linear term of the numerics and a bias
    (``modules.Wide``).

    Args:
        spec: hyper-parameters (only ``tasks``: a ``value`` head is a linear regression).
        inputs: the shape of the encoded input.
    """

    name = "lr"

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs, ("ctr", "cvr", *value_output(spec)), wide=True)

    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Nothing: the model is its wide part."""
        return {}

    @property
    def loss_names(self) -> tuple[str, ...]:
        return self.outputs

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        out = {"ctr": bce(logits["ctr"], batch["click"]),
               "cvr": masked_bce(logits["cvr"], batch["conversion"], batch["click"])}
        if "value" in logits:
            out["value"] = value_loss(logits["value"], batch)
        return out
