"""What a ranking network is built from: feature vocabularies, tasks and layer sizes."""
from __future__ import annotations

from dataclasses import dataclass

TASKS = ("ctr", "cvr", "value")
CVR_MODES = ("entire_space", "masked")


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters shared by every network in ``pipeline.models``.

    Args:
        cardinalities: per categorical feature, the vocabulary size including index 0
            (unknown or missing). Ids of feature ``f`` must lie in ``[0, cardinalities[f])``.
        num_numeric: number of numeric features (already standardized floats; may be 0).
        tasks: heads of the multi-task models, a subset of ``("ctr", "cvr", "value")`` that
            contains ``"ctr"``; single-task models ignore it.
        cvr_mode: how multi-task models with a ``"cvr"`` head train it. ``"entire_space"``:
            BCE(pCTR * pCVR, conversion) over all exposures; ``"masked"``: BCE(pCVR,
            conversion) over clicked exposures only.
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
        reweight_conversion: ``reweight`` model sample weight per conversion.
        reweight_value: ``reweight`` model sample weight per unit of ``log1p(conversion_value)``.

    Raises:
        ValueError: naming the first field that is out of range.
    """

    cardinalities: tuple[int, ...]
    num_numeric: int
    tasks: tuple[str, ...] = ("ctr", "cvr")
    cvr_mode: str = "entire_space"
    embedding_dim: int = 16
    bottom_hidden: tuple[int, ...] = (128, 64)
    tower_hidden: tuple[int, ...] = (64,)
    num_experts: int = 4
    expert_hidden: tuple[int, ...] = (64,)
    num_shared_experts: int = 2
    num_task_experts: int = 2
    ple_layers: int = 2
    dropout: float = 0.1
    interaction: bool = True
    reweight_conversion: float = 5.0
    reweight_value: float = 1.0

    def __post_init__(self) -> None:
        # Lists from a config file become tuples, so that the spec stays hashable.
        for name in ("cardinalities", "tasks", "bottom_hidden", "tower_hidden", "expert_hidden"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

        if not self.cardinalities or any(c < 1 for c in self.cardinalities):
            raise ValueError(f"cardinalities must be a non-empty list of sizes >= 1, got {self.cardinalities}")
        if self.num_numeric < 0:
            raise ValueError(f"num_numeric must be >= 0, got {self.num_numeric}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be distinct names from {TASKS}, got {self.tasks}")
        if "ctr" not in self.tasks:
            raise ValueError(f"tasks must include 'ctr' (pCTR is part of every multi-task objective), got {self.tasks}")
        if self.cvr_mode not in CVR_MODES:
            raise ValueError(f"cvr_mode must be one of {CVR_MODES}, got {self.cvr_mode!r}")
        for name in ("embedding_dim", "num_experts", "num_shared_experts", "num_task_experts", "ple_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bottom_hidden", "tower_hidden", "expert_hidden"):
            if any(size < 1 for size in getattr(self, name)):
                raise ValueError(f"{name} sizes must be >= 1, got {getattr(self, name)}")
        if not self.expert_hidden:
            raise ValueError("expert_hidden must not be empty (experts without layers would all be equal)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("reweight_conversion", "reweight_value"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (sample weights stay >= 1), got {getattr(self, name)}")
