"""``pipeline score``: batch inference of a registered model over a day's rows, fused into one
ranking score and written to the ``scores`` table; and the fusion commands around it.

``score`` resolves the model (by default the ``champion`` of the ``models`` registry, see
``pipeline.registry``; ``latest``: the newest ``created_at``; or a model id),
reads the ``dt = D`` rows of ``samples`` (or of the candidates named by ``scoring.input``),
encodes them with the model's encoders (in Spark, but for the vocabulary lookups, which the
Python workers do on their Arrow batches), runs the network per partition with ``mapInArrow``
(the artifact is loaded once per Python worker, batches of ``scoring.batch_size`` rows, no
per-row Python, the key columns passed through as Arrow arrays), fuses the predictions by ``fusion.strategy``
and replaces exactly the ``dt = D`` partition of ``scores``. Every check (model, input, fusion
columns, weights or gate) runs before the write, so a failed run leaves the table as it was.

The dynamic and learned strategies need something computed from labelled days first:

* ``fusion-weights --date D``: ``segment_weights`` over the ``fusion.dynamic.days`` days ending
  at ``D - labels.lookback_days`` (the newest day whose labels are final on the night of D;
  rows with ``labels_final`` only), from ``scores`` joined to ``samples`` on ``impression_id``.
  Written to ``fusion_weights`` as its ``dt = D`` partition; scoring D uses the newest
  computation dated on or before D.
* ``fusion-train --date D``: the learned gate, trained on the final, scored day D, saved as
  ``<storage.artifacts>/fusion/learned-D/``; scoring D' uses the newest gate trained on a day
  before D'.
* ``fusion-eval --date D``: ``offline_comparison`` of the strategies on the final, scored day D.

Shape notation: B rows of an inference batch, F categorical features, N numeric features.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (DateType, DoubleType, StringType, StructField, StructType,
                               TimestampType)

from pipeline.config import Config, FusionConf, to_dict
from pipeline.errors import PipelineError
from pipeline.features.encoders import encode_for_lookup, encoded_batch
from pipeline.io import delta
from pipeline.registry import CHAMPION, SCORE_NEEDS, missing_estimates, resolve_model
from pipeline.scoring import fusion
from pipeline.scoring.learned import LearnedFusion, train_learned
from pipeline.training.artifacts import LoadedModel, load_artifact

log = logging.getLogger(__name__)
KEY_COLUMNS = ("impression_id", "request_id", "user_id", "item_id")
PREDICTIONS = ("p_ctr", "p_cvr", "p_ctcvr")
EXTRA_OUTPUTS = ("p_value",)  # written as null when the model has no such head
GATE_PREFIX = "learned-"

# The design's scores table; the key columns are null when the input lacks them, so every
# date has one schema whatever input it was scored from.
SCORES_SCHEMA = StructType([
    *[StructField(name, StringType()) for name in KEY_COLUMNS],
    *[StructField(name, DoubleType()) for name in (*PREDICTIONS, *EXTRA_OUTPUTS)],
    StructField("score", DoubleType()), StructField("fusion", StringType()), StructField("model_id", StringType()),
    StructField("scored_at", TimestampType()), StructField("dt", DateType()),
])
FUSION_WEIGHTS_SCHEMA = StructType([
    *fusion.SEGMENT_WEIGHTS_SCHEMA.fields,
    StructField("from_date", DateType()), StructField("to_date", DateType()),
    StructField("computed_at", TimestampType()), StructField("dt", DateType()),
])


# ---------------------------------------------------------------------------------------------
# The model and the input


def read_input(spark: SparkSession, cfg: Config, date: dt.date) -> tuple[DataFrame, str]:
    """The rows to score for ``date`` and a name for them (for messages and the summary).

    ``scoring.input`` unset: the ``dt = date`` partition of ``samples``. Set: a Delta table path,
    else a catalog table name; its ``dt = date`` rows when it has a ``dt`` column, else all rows.

    Raises:
        PipelineError: the input does not exist or has no rows for ``date``.
    """
    source = cfg.scoring.input
    if source is None:
        name, path = "samples", cfg.table_path("samples")
        if not delta.is_table(spark, path):
            raise PipelineError(f"no samples table at {path}; run pipeline build-samples first")
        rows = delta.read_table(spark, path)
    elif delta.is_table(spark, source):
        name, rows = source, delta.read_table(spark, source)
    elif _is_catalog_table(spark, source):
        name, rows = source, spark.table(source)
    else:
        raise PipelineError(f"scoring.input: {source!r} is neither a Delta table path nor a catalog table")
    if "dt" in rows.columns:
        rows = rows.where(F.col("dt") == F.lit(date))
    return rows, name


def count_input(rows: DataFrame, input_name: str, date: dt.date) -> int:
    """How many rows ``read_input`` found; raises ``PipelineError`` when none."""
    count = rows.count()
    if count == 0:
        raise PipelineError(f"no rows for dt={date} in {input_name}; nothing to score "
                            f"(build-samples for that date, or another --date)")
    return count


def _is_catalog_table(spark: SparkSession, name: str) -> bool:
    if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?", name):
        return False  # a path or some other text: no catalog lookup
    return spark.catalog.tableExists(name)


def model_outputs(model: LoadedModel) -> tuple[str, ...]:
    """The outputs the model writes: ``PREDICTIONS`` and the ``EXTRA_OUTPUTS`` it has.

    Raises:
        PipelineError: a model without both a CTR and a CVR estimate (a single-task model).
    """
    has = model.network.estimates
    if missing_estimates(has):
        raise PipelineError(f"model {model.model_id} ({model.name}) estimates only {sorted(has)}; "
                            f"scores need {' and '.join(SCORE_NEEDS)} (a multi-task model such as esmm)")
    return (*PREDICTIONS, *[name for name in EXTRA_OUTPUTS if name in has])


def check_features(columns: Sequence[str], model: LoadedModel, input_name: str) -> None:
    """Raises ``PipelineError`` naming the feature columns the input lacks."""
    missing = [f for f in (*model.encoders.categorical, *model.encoders.numeric) if f not in columns]
    if missing:
        raise PipelineError(f"{input_name} lacks the feature columns {missing} that model {model.model_id} "
                            f"was trained on")


def fusion_columns(conf: FusionConf, gate: Optional[LearnedFusion]) -> dict[str, str]:
    """Input columns the configured strategy reads, each with the conf key that asks for it."""
    needed = {}
    if conf.value_source == "column" and conf.value_column:
        needed[conf.value_column] = "fusion.value_column"
    if conf.strategy == "dynamic" and conf.dynamic.segment:
        needed[conf.dynamic.segment] = "fusion.dynamic.segment"
    if gate is not None:
        needed.update({name: "fusion.learned" for name in (*gate.spec.categorical, *gate.spec.numeric)})
    return needed


# ---------------------------------------------------------------------------------------------
# Inference per partition (runs in the Python workers)


@dataclass(frozen=True)
class InferencePlan:
    """What each Python worker needs; plain values, so that it pickles.

    Args:
        artifact_uri: the model directory (loaded once per worker).
        outputs: the prediction columns to emit (``model_outputs``).
        passthrough: input columns copied to the output.
        batch_size: rows per forward pass.
        gate_dir: the learned gate's directory, when the strategy is learned.
        fusion: ``to_dict`` of the fusion section (the gate's terms need it).
    """

    artifact_uri: str
    outputs: tuple[str, ...]
    passthrough: tuple[str, ...]
    batch_size: int
    gate_dir: Optional[str] = None
    fusion: Optional[dict] = None


# Python workers are reused across tasks: one load per worker and artifact, not one per task.
_MODELS: dict[str, LoadedModel] = {}
_GATES: dict[str, LearnedFusion] = {}


def cached_model(artifact_uri: str) -> LoadedModel:
    """The artifact at ``artifact_uri``, loaded once per process."""
    if artifact_uri not in _MODELS:
        _MODELS[artifact_uri] = load_artifact(artifact_uri)
    return _MODELS[artifact_uri]


def cached_gate(directory: str) -> LearnedFusion:
    """The learned gate at ``directory``, loaded once per process."""
    if directory not in _GATES:
        _GATES[directory] = LearnedFusion.load(directory)
    return _GATES[directory]


@torch.no_grad()
def predict_arrays(model: LoadedModel, cat: np.ndarray, num: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """The model's estimates for encoded rows, in batches.

    Args:
        model: a loaded artifact (in eval mode).
        cat: [N, F] int64 ids.
        num: [N, N_num] float32 standardized values.
        batch_size: rows per forward pass.

    Returns:
        ``p_*`` -> [N] float64; ``p_ctcvr`` is recomputed as ``p_ctr * p_cvr`` in double, so
        the written table holds the contract's product exactly.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(cat), batch_size):
        logits = model.network(torch.from_numpy(cat[start:start + batch_size]),
                               torch.from_numpy(num[start:start + batch_size]))
        for name, value in model.network.probabilities(logits).items():  # [B] each
            parts.setdefault(name, []).append(value.double().numpy())
    out = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    if "p_ctr" in out and "p_cvr" in out:
        out["p_ctcvr"] = out["p_ctr"] * out["p_cvr"]
    return out


def encoded_arrays(frame: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(cat [N, F] int64, num [N, N_num] float32)`` from the encoded columns of a frame."""
    cat = frame[list(categorical)].to_numpy(np.int64).reshape(len(frame), len(categorical))
    num = frame[list(numeric)].to_numpy(np.float32).reshape(len(frame), len(numeric))
    return np.ascontiguousarray(cat), np.ascontiguousarray(num)


def predict_batches(plan: InferencePlan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: the passthrough columns, the model's outputs and, for the learned
    strategy, ``score``."""
    # Spark runs one worker per core: more torch threads per worker would oversubscribe them.
    torch.set_num_threads(1)
    model = cached_model(plan.artifact_uri)
    gate = cached_gate(plan.gate_dir) if plan.gate_dir else None
    conf = FusionConf.from_dict(plan.fusion) if gate is not None else None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        predictions = predict_arrays(model, *encoded_batch(batch, model.encoders), plan.batch_size)
        columns = {name: batch.column(name) for name in plan.passthrough}
        columns.update({name: pa.array(predictions[name], type=pa.float64()) for name in plan.outputs})
        if gate is not None:
            frame = pa.RecordBatch.from_pydict(columns).to_pandas()
            scores = gate.scores(frame, fusion.term_arrays(conf, frame, gate_terms(gate)))
            columns["score"] = pa.array(np.asarray(scores, dtype=np.float64))
        yield pa.RecordBatch.from_pydict(columns)


def predict_rows(prepared: DataFrame, plan: InferencePlan) -> DataFrame:
    """The model (and, with ``plan.gate_dir``, the learned gate) over rows, in the workers.

    Args:
        prepared: ``encode_for_lookup``'s output: the ``plan.passthrough`` columns and the features.
        plan: what each worker needs.

    Returns:
        ``plan.passthrough``, then ``plan.outputs`` (DOUBLE), then ``score`` (DOUBLE) with a gate.
    """
    schema = StructType([*[prepared.schema[name] for name in plan.passthrough],
                         *[StructField(name, DoubleType()) for name in plan.outputs],
                         *([StructField("score", DoubleType())] if plan.gate_dir else [])])
    return spread(prepared).mapInArrow(functools.partial(predict_batches, plan), schema)


def spread(rows: DataFrame) -> DataFrame:
    """``rows``, spread round-robin over one partition per core when they come from fewer files
    than cores: a Parquet row group is read by one task, so a day written as one file would run
    the network on one core while the others wait."""
    cores = rows.sparkSession.sparkContext.defaultParallelism
    return rows if len(rows.inputFiles()) >= cores else rows.repartition(cores)


def gate_terms(gate: LearnedFusion) -> dict[str, str]:
    """The terms a trained gate mixes, each with the conf key that chose them."""
    return {t: "fusion.terms" for t in gate.spec.terms}


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class ScoreSummary:
    date: dt.date
    model_id: str
    fusion: str
    fusion_source: str  # where dynamic weights or the learned gate came from ("" otherwise)
    input: str
    rows: int
    path: str
    version: int
    seconds: float

    def line(self) -> str:
        source = f" ({self.fusion_source})" if self.fusion_source else ""
        return (f"score {self.date}: {self.rows:,} rows of {self.input} scored by {self.model_id}, "
                f"fusion {self.fusion}{source}; scores v{self.version} at {self.path}; {self.seconds:.1f} s")


def score(spark: SparkSession, cfg: Config, date: dt.date, *, model_id: str = CHAMPION,
          input_table: Optional[str] = None) -> ScoreSummary:
    """Scores the rows of ``date`` and replaces the ``dt = date`` partition of ``scores``.

    Args:
        spark: the session.
        cfg: the configuration (``fusion``, ``scoring``, tables).
        date: the partition to score and write.
        model_id: a registered model id, ``champion`` (the default) or ``latest``.
        input_table: overrides ``scoring.input`` (a Delta path or catalog table).

    Returns:
        What was written.

    Raises:
        PipelineError: an unknown model, no champion, a missing input partition or input column,
            missing dynamic weights or learned gate; all raised before anything is written.
    """
    clock = time.perf_counter()
    if input_table is not None:
        cfg = dataclasses.replace(cfg, scoring=dataclasses.replace(cfg.scoring, input=input_table))
    conf = cfg.fusion
    registered = resolve_model(spark, cfg, model_id)
    log.info("scoring %s with %s (%s), fusion %s", date, registered.model_id, model_id, conf.strategy)
    model = load_artifact(registered.artifact_uri)
    outputs = model_outputs(model)
    rows, input_name = read_input(spark, cfg, date)
    check_features(rows.columns, model, input_name)

    fusion.check_columns(fusion_columns(conf, None), rows.columns)
    gate, gate_dir, weights, fusion_source = None, None, None, ""
    if conf.strategy == "learned":
        gate_dir, gate_day = newest_gate(cfg, before=date)
        gate = LearnedFusion.load(gate_dir)
        fusion_source = f"gate trained on {gate_day}"
    if conf.strategy == "dynamic":
        weights, computed = latest_weights(spark, cfg, date)
        fusion_source = f"weights of {computed}"
    fusion.check_columns(fusion_columns(conf, gate), rows.columns)
    count = count_input(rows, input_name, date)

    keys = [name for name in KEY_COLUMNS if name in rows.columns]
    passthrough = tuple(dict.fromkeys([*keys, *fusion_columns(conf, gate)]))
    if gate is not None:  # checked here: inside the workers it would fail mid-write
        fusion.check_columns(fusion.needed_columns(conf, gate_terms(gate)), [*passthrough, *outputs])
    plan = InferencePlan(
        artifact_uri=registered.artifact_uri, outputs=outputs, passthrough=passthrough,
        batch_size=cfg.scoring.batch_size,
        gate_dir=gate_dir, fusion=to_dict(conf) if gate is not None else None)
    predicted = predict_rows(encode_for_lookup(rows, model.encoders, keep=passthrough), plan)

    if conf.strategy == "dynamic":
        predicted = fusion.join_segment_weights(predicted, weights, segment=conf.dynamic.segment or "",
                                                default=conf.linear)
    score_column = F.col("score") if gate is not None else fusion.fused_score_column(conf, predicted.columns)
    out = scores_rows(predicted, score_column, strategy=conf.strategy, model_id=registered.model_id,
                      scored_at=dt.datetime.now(dt.timezone.utc), date=date)

    path = cfg.table_path("scores")
    version = delta.replace_partitions(out, path, [date])
    delta.register_table(spark, cfg.storage.database, "scores", path)
    return ScoreSummary(date=date, model_id=registered.model_id, fusion=conf.strategy, fusion_source=fusion_source,
                        input=input_name, rows=count, path=path, version=version,
                        seconds=time.perf_counter() - clock)


def scores_rows(predicted: DataFrame, score_column: Column, *, strategy: str, model_id: str,
                scored_at: dt.datetime, date: dt.date) -> DataFrame:
    """The ``scores`` rows (``SCORES_SCHEMA``) of predicted rows.

    Args:
        predicted: rows with the key columns the input had and the model's ``p_*`` columns.
        score_column: the fused score, over ``predicted``'s columns.
        strategy: the fusion strategy's name.
        model_id: the model that predicted.
        scored_at: when the run started (the same for every row).
        date: the partition.

    Returns:
        ``SCORES_SCHEMA``; a key column or extra output the input or model lacks is null.
    """
    def present_or_null(name: str, kind: str) -> Column:
        return (F.col(name) if name in predicted.columns else F.lit(None)).cast(kind).alias(name)

    return predicted.select(
        *[present_or_null(name, "string") for name in KEY_COLUMNS],
        *[present_or_null(name, "double") for name in (*PREDICTIONS, *EXTRA_OUTPUTS)],
        score_column.cast("double").alias("score"), F.lit(strategy).alias("fusion"),
        F.lit(model_id).alias("model_id"), F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.lit(date).cast("date").alias("dt"))


# ---------------------------------------------------------------------------------------------
# Labelled scores, dynamic weights, the learned gate, the offline comparison


def labelled_scores(spark: SparkSession, cfg: Config, days: Sequence[dt.date]) -> DataFrame:
    """``samples`` of ``days`` with the predictions ``scores`` holds for them (inner join on
    ``impression_id`` and ``dt``): every sample column, and ``p_*`` and ``model_id``.

    Raises:
        PipelineError: no scores or no samples table.
    """
    for name, command in (("scores", "pipeline score"), ("samples", "pipeline build-samples")):
        if not delta.is_table(spark, cfg.table_path(name)):
            raise PipelineError(f"no {name} table at {cfg.table_path(name)}; run {command} first")
    wanted = list(days)
    predicted = (delta.read_table(spark, cfg.table_path("scores")).where(F.col("dt").isin(wanted))
                 .where(F.col("impression_id").isNotNull()).alias("s"))
    samples = delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt").isin(wanted)).alias("x")
    is_same_exposure = ((F.col("x.impression_id") == F.col("s.impression_id")) & (F.col("x.dt") == F.col("s.dt")))
    joined = samples.join(predicted, on=is_same_exposure, how="inner")
    return joined.select("x.*", *[F.col(f"s.{name}") for name in (*PREDICTIONS, *EXTRA_OUTPUTS, "model_id")])


def weights_window(cfg: Config, date: dt.date) -> tuple[dt.date, dt.date]:
    """The labelled days ``fusion-weights --date date`` reads: ``fusion.dynamic.days`` days
    ending at ``date - labels.lookback_days``."""
    last = date - dt.timedelta(days=cfg.labels.lookback_days)
    return last - dt.timedelta(days=cfg.fusion.dynamic.days - 1), last


@dataclass(frozen=True)
class WeightsSummary:
    date: dt.date
    from_date: dt.date
    to_date: dt.date
    segment: str
    exposures: int
    segments: int
    path: str
    version: int
    seconds: float

    def line(self) -> str:
        return (f"fusion-weights {self.date}: {self.segments} {self.segment} segments from {self.exposures:,} "
                f"final scored exposures of {self.from_date}..{self.to_date}; fusion_weights v{self.version} "
                f"at {self.path}; {self.seconds:.1f} s")


def compute_fusion_weights(spark: SparkSession, cfg: Config, date: dt.date) -> WeightsSummary:
    """Computes the dynamic strategy's segment weights as of ``date`` (see the module doc) and
    replaces the ``dt = date`` partition of ``fusion_weights``.

    Raises:
        PipelineError: no segment configured, or no final scored exposures in the window.
    """
    clock = time.perf_counter()
    conf = cfg.fusion
    segment = conf.dynamic.segment
    if not segment:
        raise PipelineError("fusion.dynamic.segment: required to compute fusion weights")
    first, last = weights_window(cfg, date)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    rows = labelled_scores(spark, cfg, days).where(F.col("labels_final"))
    terms = fusion.strategy_terms(conf, "dynamic")
    weights = fusion.segment_weights(fusion.with_terms(rows, conf, terms), segment=segment, gain=conf.gain,
                                     smoothing=conf.dynamic.smoothing)
    collected = weights.collect()  # one row per segment: small
    overall = [row for row in collected if row["segment"] is None]
    if not overall or not overall[0]["exposures"]:
        raise PipelineError(f"no final, scored exposures in {first}..{last} to compute fusion weights from; "
                            f"score those days (pipeline score) once their samples are final")
    out = spark.createDataFrame(
        [(*row, first, last, dt.datetime.now(dt.timezone.utc), date) for row in collected], FUSION_WEIGHTS_SCHEMA)
    path = cfg.table_path("fusion_weights")
    version = delta.replace_partitions(out, path, [date])
    delta.register_table(spark, cfg.storage.database, "fusion_weights", path)
    return WeightsSummary(date=date, from_date=first, to_date=last, segment=segment,
                          exposures=int(overall[0]["exposures"]), segments=len(collected) - 1, path=path,
                          version=version, seconds=time.perf_counter() - clock)


def latest_weights(spark: SparkSession, cfg: Config, date: dt.date) -> tuple[DataFrame, dt.date]:
    """The newest ``fusion_weights`` computation dated on or before ``date``, for this segment.

    Returns:
        ``(SEGMENT_WEIGHTS_SCHEMA rows, the computation's date)``: a small local table, ready to
        broadcast.

    Raises:
        PipelineError: none computed yet, or computed for another segment column.
    """
    path = cfg.table_path("fusion_weights")
    hint = f"run pipeline fusion-weights --date {date} first"
    if not delta.is_table(spark, path):
        raise PipelineError(f"fusion.strategy dynamic: no fusion weights at {path}; {hint}")
    # One row per segment and computation: small enough to read whole in one job.
    rows = (delta.read_table(spark, path).where(F.col("dt") <= F.lit(date))
            .select(*fusion.SEGMENT_WEIGHTS_SCHEMA.names, "dt").collect())
    if not rows:
        raise PipelineError(f"fusion.strategy dynamic: no fusion weights computed on or before {date} in {path}; {hint}")
    computed = max(row["dt"] for row in rows)
    segment = cfg.fusion.dynamic.segment
    latest = [row for row in rows if row["dt"] == computed]
    if not any(row["segment_column"] == segment for row in latest):
        raise PipelineError(f"fusion.dynamic.segment: the fusion weights of {computed} are not per {segment!r}; {hint}")
    return spark.createDataFrame([tuple(row)[:-1] for row in latest], fusion.SEGMENT_WEIGHTS_SCHEMA), computed


def gate_directory(cfg: Config, day: dt.date) -> str:
    """Where ``fusion-train --date day`` saves the learned gate."""
    return os.path.join(cfg.artifacts_path, "fusion", f"{GATE_PREFIX}{day.isoformat()}")


def newest_gate(cfg: Config, *, before: dt.date) -> tuple[str, dt.date]:
    """The gate trained on the newest day before ``before`` (a gate never scores its own day).

    Raises:
        PipelineError: no such gate.
    """
    folder = os.path.join(cfg.artifacts_path, "fusion")
    days = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = re.fullmatch(rf"{GATE_PREFIX}(\d{{4}}-\d{{2}}-\d{{2}})", name)
        if match and os.path.exists(os.path.join(folder, name, "gate.pt")):
            day = dt.date.fromisoformat(match.group(1))
            if day < before:
                days.append(day)
    if not days:
        raise PipelineError(f"fusion.strategy learned: no gate trained on a day before {before} under {folder}; "
                            f"run pipeline fusion-train --date D on a final, scored day D first")
    return gate_directory(cfg, max(days)), max(days)


def labelled_day(spark: SparkSession, cfg: Config, date: dt.date, columns: Sequence[str]) -> pd.DataFrame:
    """The final, scored exposures of ``date`` with ``columns`` (those that exist), as pandas.

    Raises:
        PipelineError: the day has no samples, labels that are not final yet, or no scores.
    """
    finality = (delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt") == F.lit(date))
                .agg(F.count(F.lit(1)).alias("rows"), F.min(F.col("labels_final").cast("int")).alias("final"))
                .first()) if delta.is_table(spark, cfg.table_path("samples")) else None
    if finality is None or not finality["rows"]:
        raise PipelineError(f"no samples for {date}; run pipeline build-samples for it first")
    if not finality["final"]:
        raise PipelineError(f"samples for {date} are not final yet (labels_final = false); "
                            f"use a day at least labels lookback days old")
    rows = labelled_scores(spark, cfg, [date])
    frame = rows.select(*[name for name in dict.fromkeys(columns) if name in rows.columns]).toPandas()
    if frame.empty:
        raise PipelineError(f"no scores for {date}; run pipeline score --date {date} first")
    return frame


def _day_columns(conf: FusionConf) -> list[str]:
    """What training and evaluating fusion read from a labelled day."""
    context = [*conf.learned.categorical, *conf.learned.numeric]
    value = [conf.value_column] if conf.value_source == "column" and conf.value_column else []
    segment = [conf.dynamic.segment] if conf.dynamic.segment else []
    return ["request_id", *fusion.LABELS, *PREDICTIONS, *EXTRA_OUTPUTS, "model_id", *value, *segment, *context]


@dataclass(frozen=True)
class GateSummary:
    date: dt.date
    rows: int
    model_ids: tuple[str, ...]
    history: tuple[float, ...]
    directory: str
    seconds: float

    def line(self) -> str:
        return (f"fusion-train {self.date}: learned gate on {self.rows:,} exposures scored by "
                f"{', '.join(self.model_ids)}, {len(self.history)} epochs, loss {self.history[0]:.4f} -> "
                f"{self.history[-1]:.4f}; saved to {self.directory}; {self.seconds:.1f} s")


def train_fusion_gate(spark: SparkSession, cfg: Config, date: dt.date) -> GateSummary:
    """Trains the learned gate on the final, scored day ``date`` and saves it
    (``gate_directory``), with ``training.json`` (what it was trained on)."""
    clock = time.perf_counter()
    frame = labelled_day(spark, cfg, date, _day_columns(cfg.fusion))
    gate, history = train_learned(frame, cfg.fusion)
    directory = gate_directory(cfg, date)
    gate.save(directory)
    model_ids = tuple(sorted(frame["model_id"].dropna().unique()))
    with open(os.path.join(directory, "training.json"), "w", encoding="utf-8") as fh:
        json.dump({"date": date.isoformat(), "rows": len(frame), "model_ids": list(model_ids),
                   "history": history, "fusion": to_dict(cfg.fusion)}, fh, indent=1)
    return GateSummary(date=date, rows=len(frame), model_ids=model_ids, history=tuple(history),
                       directory=directory, seconds=time.perf_counter() - clock)


@dataclass(frozen=True)
class FusionReport:
    date: dt.date
    rows: int
    requests: int
    weights_date: Optional[dt.date]
    gate_date: Optional[dt.date]
    table: pd.DataFrame  # offline_comparison's columns

    def text(self) -> str:
        """A header line, then one row per strategy."""
        compared = [f"dynamic weights of {self.weights_date}" if self.weights_date else "no dynamic weights",
                    f"learned gate of {self.gate_date}" if self.gate_date else "no learned gate"]
        shown = self.table.assign(weights=self.table["weights"].map(_format_numbers))
        body = shown.to_string(index=False, float_format=lambda x: f"{x:.4f}")
        return (f"fusion-eval {self.date}: {self.rows:,} exposures in {self.requests:,} requests; "
                f"{'; '.join(compared)}\n{body}")


def evaluate_fusion(spark: SparkSession, cfg: Config, date: dt.date) -> FusionReport:
    """``offline_comparison`` on the final, scored day ``date``: linear and power as configured,
    dynamic with the newest weights dated on or before ``date``, learned with the newest gate
    trained before ``date`` (each when there is one), and the day's best linear weights."""
    frame = labelled_day(spark, cfg, date, _day_columns(cfg.fusion))
    weights_table, weights_date, gate, gate_date = None, None, None, None
    if cfg.fusion.dynamic.segment and delta.is_table(spark, cfg.table_path("fusion_weights")):
        try:
            found, weights_date = latest_weights(spark, cfg, date)
            weights_table = found.toPandas()
        except PipelineError:
            weights_date = None
    try:
        gate_dir, gate_date = newest_gate(cfg, before=date)
        gate = LearnedFusion.load(gate_dir)
    except PipelineError:
        gate_date = None
    table = fusion.offline_comparison(cfg.fusion, frame, weights_table=weights_table, learned=gate)
    return FusionReport(date=date, rows=len(frame), requests=int(frame["request_id"].nunique(dropna=False)),
                        weights_date=weights_date, gate_date=gate_date, table=table)


def _format_numbers(numbers: Optional[Mapping[str, float]]) -> str:
    if not numbers:
        return "-"
    return ", ".join(f"{name}={value:.4g}" for name, value in numbers.items())
