"""Probabilities and per-task losses from the networks' logits.

The networks return logits only; this module turns them into what each model estimates and
into the losses it is trained on. Every loss is a scalar mean. A loss over a subset of rows
(clicked, converted) is 0 on a batch without such rows, and still part of the graph.

Shape notation: B batch, F categorical fields, N numeric features.

Batch keys: ``"cat"`` [B, F] long, ``"num"`` [B, N] float, ``"click"`` [B] float 0/1,
``"conversion"`` [B] float 0/1 (a conversion implies a click), ``"conversion_value"`` [B]
float >= 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.models.registry import check_model_name
from pipeline.models.spec import ModelSpec

# Probabilities are clamped before a log: BCE on pCTR * pCVR has no logit to work from.
EPSILON = 1e-7

SINGLE_TASK_LOSSES = {"ctr_dnn": ("ctr",), "cvr_naive": ("cvr",), "reweight": ("ctr",)}
MULTI_TASK = ("shared_bottom", "omoe", "mmoe", "ple")


def loss_names(name: str, spec: ModelSpec) -> tuple[str, ...]:
    """The keys ``task_losses`` returns for model ``name``, in order.

    Args:
        name: a model name (a key of ``MODELS``).
        spec: model hyper-parameters.

    Returns:
        Loss keys, e.g. ``("ctr", "ctcvr")`` for ESMM.
    """
    check_model_name(name)
    if name in SINGLE_TASK_LOSSES:
        return SINGLE_TASK_LOSSES[name]
    value = ("value",) if "value" in spec.tasks else ()
    if name == "esmm":
        return ("ctr", "ctcvr", *value)
    if name == "aitm":
        return ("ctr", "ctcvr", "calibration", *value)
    cvr = {"entire_space": ("ctcvr",), "masked": ("cvr",)}[spec.cvr_mode] if "cvr" in spec.tasks else ()
    return ("ctr", *cvr, *value)


def probabilities(name: str, logits: dict[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """What model ``name`` estimates, from its logits.

    Args:
        name: a model name (a key of ``MODELS``).
        logits: the network's output, [B] tensors.
        spec: model hyper-parameters.

    Returns:
        The [B] estimates the model has, among:
        ``"p_ctr"`` P(click); ``"p_cvr"`` P(conversion | click); ``"p_ctcvr"`` P(click and
        conversion) = p_ctr * p_cvr, a product of probabilities (AITM estimates it directly and
        derives p_cvr = clamp(p_ctcvr / p_ctr, 0, 1)); ``"p_value"`` the expected
        log1p(conversion_value) given a conversion (a regression output, clamped at 0 since
        log1p of a value >= 0 is >= 0, not a probability).
    """
    check_model_name(name)
    out = {}
    if "ctr" in logits:
        out["p_ctr"] = torch.sigmoid(logits["ctr"])  # [B]
    if "cvr" in logits:
        out["p_cvr"] = torch.sigmoid(logits["cvr"])  # [B]
        if "p_ctr" in out:
            out["p_ctcvr"] = out["p_ctr"] * out["p_cvr"]  # [B]
    if "ctcvr" in logits:
        out["p_ctcvr"] = torch.sigmoid(logits["ctcvr"])  # [B]
        out["p_cvr"] = (out["p_ctcvr"] / out["p_ctr"].clamp_min(EPSILON)).clamp(0.0, 1.0)  # [B]
    if "value" in logits:
        out["p_value"] = logits["value"].clamp_min(0.0)  # [B]
    return out


def task_losses(name: str, logits: dict[str, Tensor], batch: dict[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """The scalar losses model ``name`` is trained on; their keys are ``loss_names(name, spec)``.

    ``"ctr"``: BCE(pCTR, click) over all exposures (``reweight``: weighted by
    ``1 + reweight_conversion * conversion + reweight_value * log1p(conversion_value)``,
    normalized by the sum of the weights). ``"cvr"``: BCE(pCVR, conversion) over clicked
    exposures (``cvr_naive``, and multi-task models with ``cvr_mode="masked"``). ``"ctcvr"``:
    BCE(pCTCVR, conversion) over all exposures; for ESMM and entire-space multi-task models
    pCTCVR = pCTR * pCVR, so the CVR tower learns only through the product. ``"calibration"``
    (AITM): mean(relu(pCTCVR - pCTR)), since converting cannot be likelier than clicking.
    ``"value"``: MSE(value output, log1p(conversion_value)) over converted exposures.

    Args:
        name: a model name (a key of ``MODELS``).
        logits: the network's output, [B] tensors.
        batch: the batch the logits were computed from (see the module docstring).
        spec: model hyper-parameters.

    Returns:
        Scalar losses by name.
    """
    names = loss_names(name, spec)
    click, conversion = batch["click"], batch["conversion"]  # [B], [B]
    losses: dict[str, Tensor] = {}
    if name == "reweight":
        weight = 1.0 + spec.reweight_conversion * conversion + spec.reweight_value * torch.log1p(
            batch["conversion_value"])  # [B]
        per_row = F.binary_cross_entropy_with_logits(logits["ctr"], click, reduction="none")  # [B]
        losses["ctr"] = (weight * per_row).sum() / weight.sum()
    elif "ctr" in names:
        losses["ctr"] = F.binary_cross_entropy_with_logits(logits["ctr"], click)
    if "cvr" in names:
        per_row = F.binary_cross_entropy_with_logits(logits["cvr"], conversion, reduction="none")  # [B]
        losses["cvr"] = _masked_mean(per_row, click)
    if "ctcvr" in names:
        p = probabilities(name, logits, spec)
        if "ctcvr" in logits:  # AITM has a pCTCVR logit: the stable form applies
            losses["ctcvr"] = F.binary_cross_entropy_with_logits(logits["ctcvr"], conversion)
        else:
            losses["ctcvr"] = F.binary_cross_entropy(p["p_ctcvr"].clamp(EPSILON, 1.0 - EPSILON), conversion)
        if "calibration" in names:
            losses["calibration"] = torch.relu(p["p_ctcvr"] - p["p_ctr"]).mean()  # [B] -> scalar
    if "value" in names:
        target = torch.log1p(batch["conversion_value"])  # [B]
        losses["value"] = _masked_mean((logits["value"] - target).pow(2), conversion)
    return losses


def _masked_mean(per_row: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``per_row`` [B] over rows where ``mask`` [B] is 1; 0 (in the graph) if none."""
    # where, not a product: an unselected row must not contribute even if it is not finite.
    return torch.where(mask.bool(), per_row, torch.zeros_like(per_row)).sum() / mask.sum().clamp_min(1.0)
