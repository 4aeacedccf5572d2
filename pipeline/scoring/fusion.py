"""Score fusion: one ranking score per exposure from a model's task predictions.

Terms (``TERMS``), per exposure:
    p_ctr            P(click)
    p_cvr            P(conversion | click)
    p_ctcvr          P(click and conversion) = p_ctr * p_cvr
    expected_value   p_ctcvr * v, with v the value of a conversion (``fusion.value_source``):
                     ``p_value``   expm1(p_value), since the model's value head predicts log1p(value);
                     ``column``    a column of the input such as ``price`` (missing: value_per_conversion);
                     ``constant``  ``fusion.value_per_conversion``.

Strategies (``fusion.strategy``):
    linear    sum_t w_t * term_t              w_t >= 0 from ``fusion.linear``
    power     prod_t term_t ** e_t            e_t >= 0 from ``fusion.power``
    dynamic   sum_t w_t(s) * term_t           w_t(s) per segment s, from ``segment_weights``
    learned   exp(c(x)) * sum_t softmax(a(x))_t * term_t / scale_t, a gating network over the
              context x of the exposure (``pipeline.scoring.learned``)

Linear, power and dynamic are written once, over the operators that Spark columns and NumPy
arrays share, so batch scoring (``fused_score_column``) and offline evaluation (``fused_scores``)
compute the same numbers. The conf section (``FusionConf``) lives in ``pipeline.config``.
"""
from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.errors import PipelineError
from pipeline.scoring.business import Values
from pipeline.scoring.conf import STRATEGIES, TERMS, FusionConf, GainConf
from pipeline.tables import WEIGHT_COLUMNS, weight_column


class Gate(Protocol):
    """What fusion needs of a trained gate (``pipeline.scoring.learned.LearnedFusion``, which
    needs torch; the column strategies do not)."""

    spec: Any  # its ``terms``: the terms it mixes

    def scores(self, frame: pd.DataFrame, terms: Mapping[str, np.ndarray]) -> np.ndarray: ...


# What each dynamic term predicts: the label it estimates per exposure and the gain coefficient
# that prices that label. p_cvr is left out: it is a rate among clicks, not per exposure.
OUTCOMES = {"p_ctr": ("click", "click"), "p_ctcvr": ("conversion", "conversion"),
            "expected_value": ("conversion_value", "value")}


# ---------------------------------------------------------------------------------------------
# Terms


def strategy_terms(conf: FusionConf, strategy: Optional[str] = None) -> dict[str, str]:
    """The terms a strategy combines, each with the conf key that asks for it (for errors).

    Args:
        conf: the fusion section.
        strategy: one of ``STRATEGIES``; ``None``: ``conf.strategy``.

    Returns:
        term -> conf key, in ``TERMS`` order.
    """
    strategy = strategy or conf.strategy
    if strategy in ("linear", "power"):
        numbers = getattr(conf, strategy)
        return {t: f"fusion.{strategy}.{t}" for t, number in numbers.items() if number > 0}
    if strategy == "dynamic":
        return {t: f"fusion.gain.{coefficient}" for t, (_, coefficient) in OUTCOMES.items()
                if getattr(conf.gain, coefficient) > 0}
    if strategy == "learned":
        return listed_terms(conf)
    raise PipelineError(f"fusion.strategy: unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")


def listed_terms(conf: FusionConf) -> dict[str, str]:
    """``fusion.terms`` (what the learned gate and the linear grid search weigh), in ``TERMS`` order."""
    return {t: "fusion.terms" for t in TERMS if t in conf.terms}


def term_columns(conf: FusionConf, columns: Sequence[str], terms: Mapping[str, str]) -> dict[str, Column]:
    """Spark expressions of ``terms`` over an input with ``columns``.

    Args:
        conf: the fusion section (value source).
        columns: the input's column names.
        terms: term -> the conf key that needs it (``strategy_terms``).

    Returns:
        term -> DOUBLE column.

    Raises:
        PipelineError: an input column a term needs is missing, naming the conf key.
    """
    check_columns(needed_columns(conf, terms), columns)
    return {t: (F.col("p_ctcvr").cast("double") * _value_column(conf) if t == "expected_value"
                else F.col(t).cast("double")) for t in terms}


def with_terms(df: DataFrame, conf: FusionConf, terms: Mapping[str, str]) -> DataFrame:
    """``df`` with the DOUBLE columns of ``terms`` (added, or replacing the prediction columns)."""
    return df.withColumns(term_columns(conf, df.columns, terms))


def _value_column(conf: FusionConf) -> Column:
    """The value of a conversion, by ``fusion.value_source``."""
    if conf.value_source == "p_value":
        return F.expm1(F.col("p_value").cast("double"))
    fallback = F.lit(conf.value_per_conversion)
    if conf.value_source == "column":
        # nanvl for NaN, coalesce for null: both mean an unknown value.
        return F.coalesce(F.nanvl(F.col(conf.value_column or "").cast("double"), fallback), fallback)
    return fallback


def term_arrays(conf: FusionConf, frame: pd.DataFrame, terms: Mapping[str, str]) -> dict[str, np.ndarray]:
    """NumPy twin of ``term_columns``: [N] float64 arrays of ``terms`` over a pandas frame."""
    check_columns(needed_columns(conf, terms), frame.columns)

    def column(name: str) -> np.ndarray:
        return pd.to_numeric(frame[name]).to_numpy(np.float64, na_value=np.nan)

    def value() -> np.ndarray:
        if conf.value_source == "p_value":
            return np.expm1(column("p_value"))
        if conf.value_source == "column":
            given = column(conf.value_column or "")
            return np.where(np.isnan(given), conf.value_per_conversion, given)
        return np.full(len(frame), conf.value_per_conversion)

    return {t: column("p_ctcvr") * value() if t == "expected_value" else column(t) for t in terms}


def check_columns(needed: Mapping[str, str], available: Sequence[str]) -> None:
    """Raises ``PipelineError`` naming the conf key of the first needed column that is missing.

    Args:
        needed: column -> the conf key that needs it.
        available: the input's columns.
    """
    present = set(available)
    for name, key in needed.items():
        if name not in present:
            raise PipelineError(f"{key}: needs column {name!r}, which the input does not have")


def needed_columns(conf: FusionConf, terms: Mapping[str, str]) -> dict[str, str]:
    """The input columns ``terms`` are computed from, each with the conf key that needs it.

    Args:
        conf: the fusion section (value source).
        terms: term -> the conf key that asks for it (``strategy_terms``).

    Returns:
        column -> conf key.
    """
    needed = {("p_ctcvr" if term == "expected_value" else term): key for term, key in terms.items()}
    if "expected_value" in terms and conf.value_source == "p_value":
        needed["p_value"] = "fusion.value_source"
    if "expected_value" in terms and conf.value_source == "column":
        needed[conf.value_column or ""] = "fusion.value_column"
    return needed


# ---------------------------------------------------------------------------------------------
# Strategies, for Spark columns and NumPy arrays alike


def linear_fusion(terms: Mapping[str, Values], weights: Mapping[str, Any]) -> Values:
    """``sum_t weights[t] * terms[t]`` over the keys of ``terms``.

    Args:
        terms: term -> [N] array or Spark column.
        weights: term -> a Python float, or a per-row [N] array / column (dynamic).
    """
    return functools.reduce(operator.add, (weights[t] * terms[t] for t in terms))


def power_fusion(terms: Mapping[str, Values], exponents: Mapping[str, float]) -> Values:
    """``prod_t terms[t] ** exponents[t]`` over the keys of ``terms``."""
    return functools.reduce(operator.mul, (terms[t] ** exponents[t] for t in terms))


def fuse(conf: FusionConf, strategy: str, values: Mapping[str, Values],
         dynamic_weights: Callable[[], Mapping[str, Values]]) -> Values:
    """``values`` (Spark columns or arrays, by term) fused by ``strategy``: linear, power, or
    dynamic, a linear fusion with the per-row weights ``dynamic_weights()`` gives."""
    if strategy == "linear":
        return linear_fusion(values, conf.linear)
    if strategy == "power":
        return power_fusion(values, conf.power)
    return linear_fusion(values, dynamic_weights())


def fused_score_column(conf: FusionConf, columns: Sequence[str], strategy: Optional[str] = None) -> Column:
    """The fused score as a Spark expression (linear, power or dynamic).

    Args:
        conf: the fusion section.
        columns: the input's column names; for ``dynamic`` they include the ``w_<term>`` columns
            that ``join_segment_weights`` adds.
        strategy: overrides ``conf.strategy``.

    Returns:
        A DOUBLE column; alias it ``score``.

    Raises:
        PipelineError: a needed column is missing, or the strategy is ``learned`` (a network,
            applied per partition with ``LearnedFusion.scores``).
    """
    strategy = strategy or conf.strategy
    if strategy == "learned":
        raise PipelineError("fusion.strategy: learned is a network, not a column expression "
                            "(score partitions with LearnedFusion.scores)")
    terms = strategy_terms(conf, strategy)

    def dynamic_weights() -> dict[str, Column]:
        missing = [weight_column(t) for t in terms if weight_column(t) not in columns]
        if missing:
            raise PipelineError(f"fusion.strategy: dynamic needs the weight columns {missing} (join_segment_weights)")
        return {t: F.col(weight_column(t)) for t in terms}

    return fuse(conf, strategy, term_columns(conf, columns, terms), dynamic_weights)


def fused_scores(conf: FusionConf, frame: pd.DataFrame, *, strategy: Optional[str] = None,
                 weights_table: Optional[pd.DataFrame] = None,
                 learned: Optional[Gate] = None) -> np.ndarray:
    """NumPy twin of ``fused_score_column``, for every strategy.

    Args:
        conf: the fusion section.
        frame: one row per exposure with the prediction columns (and segment or context columns).
        strategy: overrides ``conf.strategy``.
        weights_table: ``dynamic``: one computation of ``segment_weights``, as pandas.
        learned: ``learned``: the trained gate.

    Returns:
        [N] float64 scores.
    """
    strategy = strategy or conf.strategy
    if strategy == "learned":
        if learned is None:
            raise PipelineError("fusion.strategy: learned needs a trained gate (pipeline fusion-train)")
        return learned.scores(frame, term_arrays(conf, frame, {t: "fusion.terms" for t in learned.spec.terms}))

    def dynamic_weights() -> dict[str, np.ndarray]:
        if weights_table is None:
            raise PipelineError("fusion.strategy: dynamic needs segment weights (pipeline fusion-weights)")
        segment = conf.dynamic.segment or ""
        check_columns({segment: "fusion.dynamic.segment"}, frame.columns)
        return segment_weight_arrays(frame[segment].to_numpy(), weights_table, segment=segment, default=conf.linear)

    return fuse(conf, strategy, term_arrays(conf, frame, strategy_terms(conf, strategy)), dynamic_weights)


# ---------------------------------------------------------------------------------------------
# Dynamic: per-segment weights from realized outcomes


def segment_weights(rows: DataFrame, *, segment: str, gain: GainConf, smoothing: float) -> DataFrame:
    """Per-segment weights of the dynamic strategy: *calibrated expected gain*.

    Ranking by expected gain, ``E[gain] = g_click * P(click) + g_conversion * P(conversion) +
    g_value * E[value]``, would need the terms ``p_ctr``, ``p_ctcvr`` and ``expected_value`` to
    be right in every segment; they are not (a constant value per conversion, a model that
    over-predicts one category). So each term is rescaled, per segment ``s``, by how much of its
    label the segment actually realized per unit predicted::

        w_t(s) = g_t * (Y_t(s) + m * Y_t / N) / (P_t(s) + m * P_t / N)

    with ``Y_t`` the sum of term t's label (click, conversion, conversion_value), ``P_t`` the sum
    of the term itself, over the segment (``(s)``) or over all rows (no ``(s)``), ``N`` the rows,
    ``m = smoothing``: m pseudo-exposures at the global means, so a small segment's ratio shrinks
    toward the global ratio ``Y_t / P_t``. A ratio with a zero denominator is 1 (no evidence).
    ``g_t`` is the gain coefficient of t's label (``fusion.gain``); p_cvr gets weight 0. The
    weights are not normalised: they are in gain units, so items of different segments in one
    request stay comparable.

    Rows with a null segment count toward the global sums only. A row with ``segment`` null holds
    the global weights ``g_t * Y_t / P_t``, the fallback for segments not seen.

    Args:
        rows: scored exposures with final labels: the segment column, and for each priced term
            (gain coefficient > 0) its column (``with_terms``) and its label (``click``,
            ``conversion``, ``conversion_value``).
        segment: the segment column (values compared as text).
        gain: the gain coefficients.
        smoothing: m >= 0.

    Returns:
        ``SEGMENT_WEIGHTS_SCHEMA``: one row per segment and the global row.
    """
    coefficients = {t: getattr(gain, OUTCOMES[t][1]) if t in OUTCOMES else 0.0 for t in TERMS}
    priced = [t for t in TERMS if coefficients[t] > 0]
    check_columns({segment: "fusion.dynamic.segment",
                   **{name: f"fusion.gain.{OUTCOMES[t][1]}" for t in priced for name in (t, OUTCOMES[t][0])}},
                  rows.columns)
    sums = [F.count(F.lit(1)).alias("exposures")]
    for term in priced:
        sums += [F.sum(F.col(OUTCOMES[term][0]).cast("double")).alias(f"realized_{term}"),
                 F.sum(F.col(term).cast("double")).alias(f"predicted_{term}")]
    totals = rows.groupBy(F.col(segment).cast("string").alias("segment")).agg(*sums)
    overall = totals.agg(*[F.sum(name).alias(name) for name in totals.columns if name != "segment"])

    s, g = totals.where(F.col("segment").isNotNull()).alias("s"), overall.alias("g")
    m = F.lit(float(smoothing))

    def smoothed(total: str) -> Column:
        return F.col(f"s.{total}") + m * F.col(f"g.{total}") / F.col("g.exposures")

    per_segment = s.crossJoin(g).select(
        F.lit(segment).alias("segment_column"), F.col("s.segment").alias("segment"),
        F.col("s.exposures").cast("long").alias("exposures"),
        *[_calibrated_weight(coefficients[t], smoothed(f"realized_{t}"), smoothed(f"predicted_{t}"))
          .alias(weight_column(t)) for t in TERMS])
    global_row = g.select(
        F.lit(segment).alias("segment_column"), F.lit(None).cast("string").alias("segment"),
        F.coalesce(F.col("g.exposures"), F.lit(0)).cast("long").alias("exposures"),
        *[_calibrated_weight(coefficients[t], F.col(f"g.realized_{t}"), F.col(f"g.predicted_{t}"))
          .alias(weight_column(t)) for t in TERMS])
    return per_segment.unionByName(global_row)


def _calibrated_weight(coefficient: float, realized: Column, predicted: Column) -> Column:
    """``coefficient * realized / predicted``; the ratio is 1 for a zero or missing denominator."""
    if coefficient == 0:
        return F.lit(0.0)  # an unpriced term (p_cvr, or a gain coefficient of 0)
    ratio = F.when(predicted > 0, realized / predicted).otherwise(F.lit(1.0))
    return F.lit(coefficient) * ratio


def join_segment_weights(scores: DataFrame, weights: DataFrame, *, segment: str,
                         default: Mapping[str, float]) -> DataFrame:
    """Adds the ``w_<term>`` columns of each row's segment to ``scores``.

    A segment missing from ``weights`` (or a null segment) gets the global row's weights, and
    without a global row (no weights computed yet) ``default``.

    Args:
        scores: rows to score, with the segment column.
        weights: one computation of ``segment_weights`` (rows of other segment columns are ignored).
        segment: the segment column.
        default: term -> weight, e.g. ``fusion.linear``; terms missing from it weigh 0.

    Returns:
        ``scores``' columns (any earlier ``w_*`` replaced) and the ``w_<term>`` DOUBLE columns.
    """
    check_columns({segment: "fusion.dynamic.segment"}, scores.columns)
    mine = weights.where(F.col("segment_column") == segment)
    by_segment = F.broadcast(mine.where(F.col("segment").isNotNull())).alias("w")
    # An aggregate without grouping is exactly one row (nulls when there is no global row),
    # so the cross join below never multiplies the scored rows.
    overall = mine.where(F.col("segment").isNull()).agg(
        *[F.first(name).alias(name) for name in WEIGHT_COLUMNS]).alias("g")
    is_same_segment = F.col(f"x.{segment}").cast("string") == F.col("w.segment")
    joined = (scores.drop(*WEIGHT_COLUMNS).alias("x")
              .join(by_segment, on=is_same_segment, how="left")
              .crossJoin(F.broadcast(overall)))
    return joined.select("x.*", *[
        F.coalesce(F.col(f"w.{weight_column(t)}"), F.col(f"g.{weight_column(t)}"),
                   F.lit(float(default.get(t, 0.0)))).alias(weight_column(t)) for t in TERMS])


def segment_weight_arrays(segments: np.ndarray, weights: pd.DataFrame, *, segment: str,
                          default: Mapping[str, float]) -> dict[str, np.ndarray]:
    """NumPy twin of ``join_segment_weights``: the weights of each row's segment.

    Args:
        segments: [N] segment values of the rows (compared as text, like Spark's cast to string).
        weights: one computation of ``segment_weights``, as pandas.
        segment: the segment column.
        default: fallback weights when ``weights`` has no global row.

    Returns:
        term -> [N] float64 weights, for every term of ``TERMS``.
    """
    mine = weights[weights["segment_column"] == segment]
    keyed = mine[mine["segment"].notna()].set_index("segment")
    overall = mine[mine["segment"].isna()]
    keys = as_text(pd.Series(segments, dtype=object))
    out = {}
    for term in TERMS:
        name = weight_column(term)
        fallback = float(overall[name].iloc[0]) if len(overall) else float(default.get(term, 0.0))
        out[term] = keys.map(keyed[name]).fillna(fallback).to_numpy(np.float64)
    return out


def as_text(values: pd.Series) -> pd.Series:
    """Values as text, missing ones kept missing (Spark's cast to string)."""
    values = values.astype(object)
    return values.where(values.isna(), values.astype(str))
