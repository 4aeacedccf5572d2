"""ESMM (Ma et al., SIGIR 2018) and the models built for the bias of its CVR estimate:
ESCM² with an IPS or a doubly robust counterfactual risk (Wang et al., SIGIR 2022) and DCMT's
counterfactual twin tower (Zhu et al., ICDE 2023).

All four share ESMM's structure: towers over shared embeddings, pCTCVR = pCTR * pCVR (a product
of probabilities) trained on conversions over all exposures. The counterfactual models add a
CVR risk on clicked exposures weighted by the inverse of the click propensity pCTR (a constant
weight, no gradient to the CTR tower), which estimates the CVR loss over the entire space.

Shape notation: B batch, F categorical fields, N numeric features.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.base import (
    Batch, RankingModel, bce, inverse_propensity, masked_bce, product_bce, value_loss, value_output)
from pipeline.models.modules import SharedInput, Tower
from pipeline.models.spec import Inputs, ModelSpec


class ESMM(RankingModel):
    """Entire Space Multi-task Model: a CTR tower and a CVR tower over shared embeddings.

    Only the embeddings are shared, as in the paper; each tower is an MLP of ``bottom_hidden +
    tower_hidden``. A ``"value"`` tower is added when ``"value"`` is in ``spec.tasks``; subclasses
    add the towers named in ``extra_towers``. Losses: ``"ctr"`` BCE(pCTR, click) and
    ``"ctcvr"`` BCE(pCTR * pCVR, conversion) over all exposures, ``"value"`` as in every
    multi-task model. In the paper the CVR tower gets no direct loss; here it also gets
    ``"cvr_click"``, BCE(pCVR, conversion) over clicked exposures, weighted by
    ``spec.click_cvr_weight`` (0 gives the paper's ESMM). On sparse logs a CVR learned through
    the product alone fits worse than one that also sees which exposures were clicked
    (docs/quality.md); the subclasses have their own counterfactual CVR risk instead.

    Args:
        spec: hyper-parameters (``cvr_mode`` is not used: ESMM is entire-space).
        inputs: the shape of the encoded input.
    """

    name = "esmm"
    extra_towers: tuple[str, ...] = ()
    # The subclasses' own CVR risks, each weighted by spec.counterfactual_weight.
    counterfactual_losses: tuple[str, ...] = ()
    click_space_cvr: bool = True

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs, ("ctr", "cvr", *value_output(spec), *self.extra_towers))
        self.input = SharedInput(inputs.cardinalities, spec.embedding_dim, inputs.num_numeric, spec.interaction)
        hidden = (*spec.bottom_hidden, *spec.tower_hidden)
        self.towers = nn.ModuleDict(
            {task: Tower(self.input.output_dim, hidden, spec.dropout) for task in self.outputs})

    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """``{"ctr", "cvr"(, "value"), *extra_towers: [B] logits}``."""
        shared = self.input(cat, num)  # [B, F * D + N (+ D)]
        return {task: tower(shared) for task, tower in self.towers.items()}

    @property
    def loss_names(self) -> tuple[str, ...]:
        return ("ctr", "ctcvr", *value_output(self.spec), *(("cvr_click",) if self._click_term else ()),
                *self.counterfactual_losses)

    @property
    def loss_weights(self) -> dict[str, float]:
        weights = {name: self.spec.counterfactual_weight for name in self.counterfactual_losses}
        return {"cvr_click": self.spec.click_cvr_weight, **weights} if self._click_term else weights

    @property
    def _click_term(self) -> bool:
        return self.click_space_cvr and self.spec.click_cvr_weight > 0

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        out = {"ctr": bce(logits["ctr"], batch["click"]),
               "ctcvr": product_bce(self.probabilities(logits)["p_ctcvr"], batch["conversion"])}
        if self._click_term:
            out["cvr_click"] = masked_bce(logits["cvr"], batch["conversion"], batch["click"])
        if "value" in logits:
            out["value"] = value_loss(logits["value"], batch)
        return out

    def _propensity_weights(self, logits: Mapping[str, Tensor]) -> Tensor:
        """1 / pCTR [B], constant and capped by ``spec.propensity_floor``."""
        return inverse_propensity(torch.sigmoid(logits["ctr"]), self.spec.propensity_floor)


class ESCM2IPS(ESMM):
    """ESCM²-IPS: ESMM plus the inverse-propensity-weighted CVR risk ``"cvr_ips"``, the mean over
    all exposures of ``click * BCE(pCVR, conversion) / pCTR``, weighted by
    ``spec.counterfactual_weight``."""

    name = "escm2_ips"
    click_space_cvr = False
    counterfactual_losses = ("cvr_ips",)

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        error = F.binary_cross_entropy_with_logits(logits["cvr"], batch["conversion"], reduction="none")  # [B]
        ips = (batch["click"] * error * self._propensity_weights(logits)).mean()
        return {**super().losses(logits, batch), "cvr_ips": ips}


class ESCM2DR(ESMM):
    """ESCM²-DR: ESMM plus a doubly robust CVR risk, learned jointly with an imputation tower.

    The imputation tower estimates the conversion label r~ of every exposure; its imputed error
    is e~ = BCE(pCVR, r~). ``"cvr_dr"`` is the mean over all exposures of ``e~ + click * (e -
    e~) / pCTR`` with e = BCE(pCVR, conversion): unclicked exposures pull pCVR towards the
    imputed labels, clicked ones correct the imputation by their inverse-propensity-weighted
    residual. ``"imputation"`` fits r~ so that e~ predicts e on clicked exposures (the mean of
    ``click * (e - e~)^2 / pCTR``, with pCVR held fixed). Both weighted by
    ``spec.counterfactual_weight``.
    """

    name = "escm2_dr"
    click_space_cvr = False
    extra_towers = ("imputation",)
    counterfactual_losses = ("cvr_dr", "imputation")

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        click, weight = batch["click"], self._propensity_weights(logits)  # [B], [B]
        cvr, imputed = logits["cvr"], torch.sigmoid(logits["imputation"])  # [B], [B]
        error = F.binary_cross_entropy_with_logits(cvr, batch["conversion"], reduction="none")  # [B]
        imputed_error = F.binary_cross_entropy_with_logits(cvr, imputed.detach(), reduction="none")  # [B]
        doubly_robust = (imputed_error + click * (error - imputed_error) * weight).mean()
        # The imputation step holds pCVR fixed: only r~ moves.
        fit = F.binary_cross_entropy_with_logits(cvr.detach(), imputed, reduction="none")  # [B]
        imputation = (click * (error.detach() - fit).pow(2) * weight).mean()
        return {**super().losses(logits, batch), "cvr_dr": doubly_robust, "imputation": imputation}


class DCMT(ESMM):
    """DCMT: ESMM plus a counterfactual twin of the CVR tower.

    The factual tower (``"cvr"``, the model's pCVR) is fitted on clicked exposures with
    inverse-propensity weights 1 / pCTR; the counterfactual tower (``"cvr_counterfactual"``)
    on unclicked exposures, with weights 1 / (1 - pCTR) and the counterfactual label 1 -
    conversion; a soft constraint keeps the two summing to 1 on every exposure. ``"cvr_twin"``
    is the sum of the two weighted risks and the mean |1 - (pCVR + pCVR*)|, weighted by
    ``spec.counterfactual_weight``.
    """

    name = "dcmt"
    click_space_cvr = False
    extra_towers = ("cvr_counterfactual",)
    counterfactual_losses = ("cvr_twin",)

    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        click, conversion = batch["click"], batch["conversion"]  # [B], [B]
        factual, counterfactual = logits["cvr"], logits["cvr_counterfactual"]  # [B], [B]
        p_ctr = torch.sigmoid(logits["ctr"]).detach()  # [B]
        floor = self.spec.propensity_floor
        clicked_risk = (click * F.binary_cross_entropy_with_logits(factual, conversion, reduction="none")
                        * inverse_propensity(p_ctr, floor))  # [B]
        unclicked_risk = ((1 - click) * inverse_propensity(1 - p_ctr, floor)
                          * F.binary_cross_entropy_with_logits(counterfactual, 1 - conversion, reduction="none"))
        constraint = (1 - torch.sigmoid(factual) - torch.sigmoid(counterfactual)).abs()  # [B]
        twin = (clicked_risk + unclicked_risk + constraint).mean()
        return {**super().losses(logits, batch), "cvr_twin": twin}
