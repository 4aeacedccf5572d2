"""The ``fusion:`` and ``scoring:`` sections of the conf: the fusion terms, the strategies and
their settings (the strategies themselves are in ``pipeline.scoring.fusion``)."""
from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

from pipeline.confload import build, require

TERMS = ("p_ctr", "p_cvr", "p_ctcvr", "expected_value")
STRATEGIES = ("linear", "power", "dynamic", "learned")
VALUE_SOURCES = ("constant", "column", "p_value")


def _default_linear() -> Mapping[str, float]:
    return types.MappingProxyType({"p_ctr": 0.1, "expected_value": 1.0})


def _default_power() -> Mapping[str, float]:
    return types.MappingProxyType({"p_ctr": 1.0, "p_cvr": 0.5})


@dataclass(frozen=True)
class GainConf:
    """What an exposure earned: ``click * clicked + conversion * converted + value * conversion_value``.

    Args:
        click: gain per click.
        conversion: gain per conversion (on top of its value).
        value: gain per unit of ``conversion_value`` (the order amount).

    Raises:
        ConfigError: a coefficient is negative or not finite, or all are 0.
    """

    click: float = 0.1
    conversion: float = 0.0
    value: float = 1.0

    def __post_init__(self) -> None:
        for name in ("click", "conversion", "value"):
            coefficient = getattr(self, name)
            require(math.isfinite(coefficient) and coefficient >= 0,
                    f"fusion.gain.{name} must be a number >= 0, got {coefficient}")
        require(self.click > 0 or self.conversion > 0 or self.value > 0,
                "fusion.gain: at least one of click, conversion, value must be > 0")


@dataclass(frozen=True)
class DynamicConf:
    """Per-segment linear weights, computed by ``segment_weights`` from realized outcomes."""

    segment: Optional[str] = "category"  # a column of the scored rows
    days: int = 14                       # labelled days the weights are computed from
    smoothing: float = 1000.0            # pseudo-exposures at the global rates added to each segment

    def __post_init__(self) -> None:
        require(self.days >= 1, "fusion.dynamic.days must be >= 1")
        require(math.isfinite(self.smoothing) and self.smoothing >= 0, "fusion.dynamic.smoothing must be >= 0")


@dataclass(frozen=True)
class LearnedConf:
    """The gating network of the learned strategy and its training on a labelled day."""

    categorical: tuple[str, ...] = ("category", "device")  # context columns, embedded
    numeric: tuple[str, ...] = ()                          # context columns, standardized
    embedding_dim: int = 4
    hidden: tuple[int, ...] = (16,)
    epochs: int = 10
    batch_requests: int = 512
    learning_rate: float = 0.01
    seed: int = 7

    def __post_init__(self) -> None:
        both = set(self.categorical) & set(self.numeric)
        require(not both, f"fusion.learned: {sorted(both)} listed as both categorical and numeric")
        for name in ("embedding_dim", "epochs", "batch_requests"):
            require(getattr(self, name) >= 1, f"fusion.learned.{name} must be >= 1")
        require(all(size >= 1 for size in self.hidden), "fusion.learned.hidden sizes must be >= 1")
        require(self.learning_rate > 0, "fusion.learned.learning_rate must be > 0")


@dataclass(frozen=True)
class EvaluationConf:
    """The offline comparison of strategies on a labelled day."""

    k: int = 3            # NDCG@K and revenue@K cut-off
    grid_steps: int = 10  # linear grid search: weights in steps of 1/grid_steps

    def __post_init__(self) -> None:
        require(self.k >= 1, "fusion.evaluation.k must be >= 1")
        require(self.grid_steps >= 1, "fusion.evaluation.grid_steps must be >= 1")


@dataclass(frozen=True)
class FusionConf:
    """How the scoring job turns task predictions into one ranking score.

    ``linear`` and ``power`` map terms to weights (exponents); a term left out has 0. Both are
    checked whatever the strategy: ``linear`` is also the dynamic fallback and both are compared
    offline. ``terms`` are what the learned gate and the linear grid search weigh.

    Raises:
        ConfigError: one line naming the first bad key.
    """

    strategy: Literal["linear", "power", "dynamic", "learned"] = "linear"
    terms: tuple[str, ...] = ("p_ctr", "p_ctcvr", "expected_value")
    value_source: Literal["constant", "column", "p_value"] = "constant"
    value_per_conversion: float = 1.0
    value_column: Optional[str] = None
    linear: Mapping[str, float] = field(default_factory=_default_linear)
    power: Mapping[str, float] = field(default_factory=_default_power)
    gain: GainConf = field(default_factory=GainConf)
    dynamic: DynamicConf = field(default_factory=DynamicConf)
    learned: LearnedConf = field(default_factory=LearnedConf)
    evaluation: EvaluationConf = field(default_factory=EvaluationConf)

    def __post_init__(self) -> None:
        require(self.strategy in STRATEGIES,
                f"fusion.strategy: must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        require(self.value_source in VALUE_SOURCES,
                f"fusion.value_source: must be one of {list(VALUE_SOURCES)}, got {self.value_source!r}")
        require(math.isfinite(self.value_per_conversion) and self.value_per_conversion >= 0,
                f"fusion.value_per_conversion must be >= 0, got {self.value_per_conversion}")
        require(self.value_source != "column" or bool(self.value_column),
                "fusion.value_column: required when fusion.value_source is column")
        require(bool(self.terms), "fusion.terms: needs at least one term")
        for i, term in enumerate(self.terms):
            require(term in TERMS, f"fusion.terms[{i}]: unknown term {term!r} (one of {', '.join(TERMS)})")
        require(len(set(self.terms)) == len(self.terms), f"fusion.terms: listed twice in {list(self.terms)}")
        _check_term_numbers(self.linear, "fusion.linear")
        _check_term_numbers(self.power, "fusion.power")
        if self.strategy == "dynamic":
            require(bool(self.dynamic.segment), "fusion.dynamic.segment: required when fusion.strategy is dynamic")
        if self.strategy == "learned":
            require(bool(self.learned.categorical or self.learned.numeric),
                    "fusion.learned: needs a categorical or numeric context column when fusion.strategy is learned")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FusionConf":
        """Builds the section from parsed YAML with the conf loader's key and type checks.

        Args:
            data: the mapping under ``fusion:``.

        Raises:
            ConfigError: naming the key, e.g. ``unknown key 'fusion.lineer'``.
        """
        return build(cls, dict(data), "fusion.")


def _check_term_numbers(values: Mapping[str, float], key: str) -> None:
    """Weights or exponents per term: known terms, finite, >= 0, one of them > 0."""
    for term, number in values.items():
        require(term in TERMS, f"{key}.{term}: unknown term (one of {', '.join(TERMS)})")
        require(math.isfinite(number) and number >= 0, f"{key}.{term} must be >= 0, got {number}")
    require(any(number > 0 for number in values.values()), f"{key}: needs a term with a value > 0")


@dataclass(frozen=True)
class ScoringConf:
    """``pipeline score``: what it reads and how many rows one inference call takes."""

    # None: the dt = --date partition of samples. Else a Delta table path, or a catalog table
    # name, holding the feature columns (a candidates table, labels not needed); when it has a
    # dt column only the dt = --date rows are scored.
    input: Optional[str] = None
    batch_size: int = 4096

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "scoring.batch_size must be >= 1")
