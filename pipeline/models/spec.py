"""What a ranking network is built from: its hyper-parameters (the conf's ``model`` section) and
the shape of its input (vocabulary sizes and numeric features, known once the encoders are fitted).

Torch-free, so that loading a conf does not build anything.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.models.registry import MODELS

TASKS = ("ctr", "cvr", "value")
CVR_MODES = ("entire_space", "masked")


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters of every network in ``pipeline.models`` (the conf's ``model`` section).

    Args:
        name: the model, a name of ``pipeline.models.registry.MODELS``.
        tasks: heads of the multi-task models, a subset of ``("ctr", "cvr", "value")`` that
            contains ``"ctr"``; the ESMM family always has ``ctr`` and ``cvr``, single-task
            models ignore it.
        cvr_mode: how shared-bottom and mixture models train their ``"cvr"`` head.
            ``"entire_space"``: BCE(pCTR * pCVR, conversion) over all exposures; ``"masked"``:
            BCE(pCVR, conversion) over clicked exposures only.
        embedding_dim: size D of every categorical embedding.
        bottom_hidden: hidden sizes of the shared bottom (and of the single-task DNN).
        tower_hidden: hidden sizes of each task tower, before its output layer.
        num_experts: experts of OMoE and MMoE.
        expert_hidden: hidden sizes of each expert (non-empty).
        num_shared_experts: shared experts per PLE extraction layer.
        num_task_experts: experts per task per PLE extraction layer.
        ple_layers: stacked PLE extraction (CGC) layers.
        dropout: dropout after every hidden layer, in ``[0, 1)``.
        interaction: add the factorization-machine pairwise interaction of the field
            embeddings to the shared input (user x item affinity is hard for a plain MLP).
        wide: add a linear model over the one-hot features to every output's logit (wide &
            deep): a deep model then starts from, and cannot fall far below, logistic regression.
        reweight_conversion: ``reweight`` model sample weight per conversion.
        reweight_value: ``reweight`` model sample weight per unit of ``log1p(conversion_value)``.
        counterfactual_weight: weight of the counterfactual CVR risk of ESCM² (IPS, DR) and of
            DCMT's twin-tower risk, next to the CTR and CTCVR losses.
        propensity_floor: the smallest pCTR (and 1 - pCTR for DCMT) an inverse propensity
            divides by; caps each weight at ``1 / propensity_floor``.
        click_cvr_weight: weight of ESMM's click-space CVR loss, BCE(pCVR, conversion) over
            clicked exposures, next to its CTR and CTCVR losses (0: the paper's ESMM).

    Raises:
        ConfigError: naming the first field that is out of range (``model.<field>``).
    """

    name: str = "esmm"
    tasks: tuple[str, ...] = ("ctr", "cvr")
    cvr_mode: str = "masked"
    embedding_dim: int = 16
    bottom_hidden: tuple[int, ...] = (128, 64)
    tower_hidden: tuple[int, ...] = (64,)
    num_experts: int = 4
    expert_hidden: tuple[int, ...] = (64,)
    num_shared_experts: int = 2
    num_task_experts: int = 2
    ple_layers: int = 2
    dropout: float = 0.0
    interaction: bool = True
    wide: bool = True
    reweight_conversion: float = 5.0
    reweight_value: float = 1.0
    counterfactual_weight: float = 0.1
    propensity_floor: float = 0.01
    click_cvr_weight: float = 1.0

    def __post_init__(self) -> None:
        # Lists from code or JSON become tuples, so that the spec stays hashable.
        for field in ("tasks", "bottom_hidden", "tower_hidden", "expert_hidden"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        _require(self.name in MODELS, f"model.name: unknown model {self.name!r}; known models: {', '.join(MODELS)}")
        unknown = [t for t in self.tasks if t not in TASKS]
        _require(not unknown and len(set(self.tasks)) == len(self.tasks),
                 f"model.tasks must be distinct names from {TASKS}, got {self.tasks}")
        _require("ctr" in self.tasks, f"model.tasks must include 'ctr' (pCTR is part of every multi-task "
                                      f"objective), got {self.tasks}")
        _require(self.cvr_mode in CVR_MODES, f"model.cvr_mode must be one of {CVR_MODES}, got {self.cvr_mode!r}")
        for field in ("embedding_dim", "num_experts", "num_shared_experts", "num_task_experts", "ple_layers"):
            _require(getattr(self, field) >= 1, f"model.{field} must be >= 1, got {getattr(self, field)}")
        for field in ("bottom_hidden", "tower_hidden", "expert_hidden"):
            _require(all(size >= 1 for size in getattr(self, field)),
                     f"model.{field} sizes must be >= 1, got {getattr(self, field)}")
        _require(bool(self.expert_hidden), "model.expert_hidden must not be empty (experts without layers would "
                                           "all be equal)")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        for field in ("reweight_conversion", "reweight_value", "counterfactual_weight", "click_cvr_weight"):
            _require(getattr(self, field) >= 0, f"model.{field} must be >= 0, got {getattr(self, field)}")
        _require(0.0 < self.propensity_floor < 0.5, f"model.propensity_floor must be in (0, 0.5), "
                                                    f"got {self.propensity_floor}")


@dataclass(frozen=True)
class Inputs:
    """The shape of a network's input, from the fitted encoders.

    Args:
        cardinalities: per categorical feature, the vocabulary size including index 0
            (unknown or missing). Ids of feature ``f`` must lie in ``[0, cardinalities[f])``.
        num_numeric: number of numeric features (already standardized floats; may be 0).

    Raises:
        ValueError: naming the field that is out of range.
    """

    cardinalities: tuple[int, ...]
    num_numeric: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "cardinalities", tuple(self.cardinalities))
        if not self.cardinalities or any(c < 1 for c in self.cardinalities):
            raise ValueError(f"cardinalities must be a non-empty list of sizes >= 1, got {self.cardinalities}")
        if self.num_numeric < 0:
            raise ValueError(f"num_numeric must be >= 0, got {self.num_numeric}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
