"""``pipeline score``: batch inference of a registered model over a day's rows, fused into one
ranking score and written to the ``scores`` table.

``score`` resolves the model (by default the ``champion`` of the ``models`` registry, see
``pipeline.registry``; ``latest``: the newest ``created_at``; or a model id),
reads the ``dt = D`` rows of ``samples`` (or of the candidates named by ``scoring.input``),
encodes them with the model's encoders (in Spark, but for the vocabulary lookups, which the
Python workers do on their Arrow batches), runs the network per partition with ``mapInArrow``
(``pipeline.scoring.inference``), fuses the predictions by ``fusion.strategy`` and replaces
exactly the ``dt = D`` partition of ``scores``. Every check (model, input, fusion columns,
weights or gate) runs before the write, so a failed run leaves the table as it was.

The dynamic and learned strategies need something computed from labelled days first:
``fusion-weights`` (``pipeline.scoring.weights``) and ``fusion-train`` (``pipeline.scoring.gates``);
``fusion-eval`` (``pipeline.scoring.evaluate``) compares the strategies offline.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config
from pipeline.confload import to_dict
from pipeline.errors import PipelineError
from pipeline.features.encoders import encode_for_lookup
from pipeline.io import delta
from pipeline.registry import CHAMPION, SCORE_NEEDS, missing_estimates, resolve_model
from pipeline.scoring import fusion
from pipeline.scoring.conf import FusionConf
from pipeline.scoring.gates import newest_gate
from pipeline.scoring.inference import InferencePlan, gate_terms, predict_rows
from pipeline.scoring.learned import LearnedFusion
from pipeline.scoring.weights import latest_weights
from pipeline.tables import EXTRA_OUTPUTS, KEY_COLUMNS, PREDICTIONS
from pipeline.training.artifacts import LoadedModel, load_artifact

log = logging.getLogger(__name__)


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
