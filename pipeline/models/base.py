"""The contract of a ranking model: its logits, what it estimates and what it is trained on.

A model is an ``nn.Module`` whose ``forward(cat, num)`` returns a dict of [B] logits (keys in
``outputs``). ``probabilities`` turns logits into estimates (``p_ctr``, ``p_cvr``, ``p_ctcvr``,
``p_value``); ``losses`` turns logits and a batch into the scalar losses named ``loss_names``.
Everything outside ``pipeline/models`` (training, scoring, evaluation) talks to models through
these methods alone, so a new model is one class in one file, named in ``registry.MODELS``.

Shape notation: B batch, F categorical fields, N numeric features.

Batch keys: ``"cat"`` [B, F] long, ``"num"`` [B, N] float, ``"click"`` [B] float 0/1,
``"conversion"`` [B] float 0/1 (a conversion implies a click), ``"conversion_value"`` [B]
float >= 0.
"""
from __future__ import annotations

import abc
import math
from typing import ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.modules import FusedEmbedding, Tower, Wide
from pipeline.models.spec import Inputs, ModelSpec

# Probabilities are clamped before a log or a division: pCTR * pCVR has no logit to work from.
EPSILON = 1e-7
Batch = Mapping[str, Tensor]


class RankingModel(nn.Module, abc.ABC):
    """Base class of every model of ``registry.MODELS``.

    Subclasses set ``name``, pass their ``outputs`` to ``__init__``, build their layers and
    implement ``deep`` and ``losses``. ``forward`` adds the wide part (a linear model per output
    over the one-hot features, ``spec.wide``) to what ``deep`` returns. Heads are ``Tower``s in
    ``self.towers`` (keyed by output).

    Args:
        spec: hyper-parameters.
        inputs: the shape of the encoded input.
        outputs: the logit keys ``forward`` returns.
        wide: add the wide part (default ``spec.wide``).
    """

    name: ClassVar[str]

    def __init__(self, spec: ModelSpec, inputs: Inputs, outputs: tuple[str, ...], wide: bool | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.inputs = inputs
        self.outputs = outputs
        use_wide = spec.wide if wide is None else wide
        self.wide = Wide(inputs.cardinalities, inputs.num_numeric, len(outputs)) if use_wide else None

    def forward(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """``{output: [B] logit}`` from ``cat`` [B, F] long ids and ``num`` [B, N] floats."""
        logits = self.deep(cat, num)
        if self.wide is None:
            return logits
        linear = self.wide(cat, num)  # [B, O]
        return {key: linear[:, i] + logits[key] if key in logits else linear[:, i]
                for i, key in enumerate(self.outputs)}

    @abc.abstractmethod
    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """The network's own ``{output: [B] logit}`` (the wide part comes on top)."""

    @abc.abstractmethod
    def losses(self, logits: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """The scalar losses the model is trained on, keyed by ``loss_names``."""

    @property
    @abc.abstractmethod
    def loss_names(self) -> tuple[str, ...]:
        """The keys ``losses`` returns, in order."""

    @property
    def loss_weights(self) -> dict[str, float]:
        """Default weight of each loss term (1.0 for those left out); ``training.loss_weights``
        overrides them."""
        return {}

    def probabilities(self, logits: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """What the model estimates, among: ``"p_ctr"`` P(click); ``"p_cvr"`` P(conversion |
        click); ``"p_ctcvr"`` P(click and conversion) = p_ctr * p_cvr, a product of probabilities
        (a model with a ``"ctcvr"`` logit estimates it directly and derives p_cvr = clamp(p_ctcvr /
        p_ctr, 0, 1)); ``"p_value"`` the expected log1p(conversion_value) given a conversion (a
        regression output, clamped at 0, since log1p of a value >= 0 is >= 0).

        Returns:
            [B] tensors for the estimates the model has.
        """
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

    @property
    def estimates(self) -> tuple[str, ...]:
        """The keys ``probabilities`` returns, from ``outputs`` alone (no forward pass)."""
        has = set(self.outputs)
        found = {"p_ctr": "ctr" in has, "p_cvr": bool(has & {"cvr", "ctcvr"}),
                 "p_ctcvr": "ctcvr" in has or {"ctr", "cvr"} <= has, "p_value": "value" in has}
        return tuple(name for name, present in found.items() if present)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer all tasks share (GradNorm balances gradients there)."""
        return self.embedding_parameters()

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The categorical embedding tables (optimised apart from the dense layers)."""
        return [p for m in self.modules() if isinstance(m, FusedEmbedding) for p in m.parameters()]

    def output_biases(self) -> dict[str, Tensor]:
        """The bias of each output unit, by output: its tower's, else the wide part's."""
        biases = {key: self.wide.linear.bias[i:i + 1] for i, key in enumerate(self.outputs)} if self.wide else {}
        towers = getattr(self, "towers", {})
        biases.update({key: tower.head.bias for key, tower in towers.items() if isinstance(tower, Tower)})
        return biases

    @torch.no_grad()
    def start_at(self, priors: Mapping[str, float]) -> None:
        """Sets each output's bias to its prior (``output_priors``), so that training starts from
        the base rates instead of p = 0.5: a rare-event head then spends no steps unlearning it."""
        for key, bias in self.output_biases().items():
            if key in priors:
                bias.fill_(priors[key])


def value_output(spec: ModelSpec) -> tuple[str, ...]:
    """``("value",)`` when ``spec.tasks`` has the value task, else ``()``."""
    return ("value",) if "value" in spec.tasks else ()


def output_priors(click_rate: float, conversion_rate: float, mean_log_value: float = 0.0) -> dict[str, float]:
    """Initial output biases from the training rows' base rates.

    Args:
        click_rate: clicks per exposure.
        conversion_rate: conversions per exposure.
        mean_log_value: mean log1p(conversion_value) over conversions.

    Returns:
        ``{"ctr", "cvr", "ctcvr": logit of the rate, "value": mean_log_value}``; the CVR rate is
        conversions per click. Towers that estimate a CVR too start there: ``"imputation"``
        (ESCM²-DR) at the CVR, ``"cvr_counterfactual"`` (DCMT) at 1 - CVR.
    """
    cvr = _logit(conversion_rate / click_rate if click_rate > 0 else 0.0)
    return {"ctr": _logit(click_rate), "cvr": cvr, "ctcvr": _logit(conversion_rate), "value": mean_log_value,
            "imputation": cvr, "cvr_counterfactual": -cvr}


def _logit(rate: float) -> float:
    rate = min(max(rate, 1e-4), 1 - 1e-4)
    return math.log(rate / (1 - rate))


# ---------------------------------------------------------------------------------------------
# Loss terms the models compose. Each is a scalar mean; a term over a subset of rows (clicked,
# converted) is 0 on a batch without such rows, and still part of the graph.


def bce(logit: Tensor, label: Tensor) -> Tensor:
    """BCE of [B] logits against [B] 0/1 labels over all rows."""
    return F.binary_cross_entropy_with_logits(logit, label)


def product_bce(probability: Tensor, label: Tensor) -> Tensor:
    """BCE of a [B] probability that has no logit (pCTR * pCVR) against [B] labels."""
    return F.binary_cross_entropy(probability.clamp(EPSILON, 1.0 - EPSILON), label)


def masked_bce(logit: Tensor, label: Tensor, mask: Tensor) -> Tensor:
    """BCE over the rows where ``mask`` [B] is 1."""
    return masked_mean(F.binary_cross_entropy_with_logits(logit, label, reduction="none"), mask)


def value_loss(value: Tensor, batch: Batch) -> Tensor:
    """MSE of the value output against log1p(conversion_value), over converted rows."""
    target = torch.log1p(batch["conversion_value"])  # [B]
    return masked_mean((value - target).pow(2), batch["conversion"])


def masked_mean(per_row: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``per_row`` [B] over rows where ``mask`` [B] is 1; 0 (in the graph) if none."""
    # where, not a product: an unselected row must not contribute even if it is not finite.
    return torch.where(mask.bool(), per_row, torch.zeros_like(per_row)).sum() / mask.sum().clamp_min(1.0)


def inverse_propensity(p_ctr: Tensor, floor: float) -> Tensor:
    """1 / pCTR [B] as a constant weight (no gradient to the CTR tower), capped at 1 / floor."""
    return 1.0 / p_ctr.detach().clamp_min(floor)
