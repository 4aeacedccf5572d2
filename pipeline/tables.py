"""Every table the jobs write, defined once: its columns and types (design section 3).

Each lives at ``Config.table_path(name)``; all but ``runs`` and ``models`` are partitioned by
``dt`` (``pipeline.io.delta.PARTITION_COLUMN``), and a run replaces exactly the dates it owns.

    samples         one row per accepted exposure: keys, features, labels   (build-samples)
    quarantine      every rejected raw record with its reason               (build-samples)
    runs            one row per build-samples or import run, with counts    (build-samples)
    training_set    the encoded rows of a training split; its columns follow the model's
                    encoders (``pipeline.training.dataset``)                (train)
    models          the registry: one row per trained model                 (train)
    scores          one row per scored exposure: predictions, fused score   (score)
    fusion_weights  per-segment weights of the dynamic fusion               (fusion-weights)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql.types import (BooleanType, DataType, DateType, DoubleType, IntegerType, LongType,
                               MapType, StringType, StructField, StructType, TimestampType)

from pipeline.logs.schema import SOURCES
from pipeline.scoring.conf import TERMS

if TYPE_CHECKING:
    from pipeline.config import FeaturesConf

# ---------------------------------------------------------------------------------------------
# samples, quarantine, runs

SAMPLE_KEYS = (("impression_id", StringType()), ("request_id", StringType()), ("user_id", StringType()),
               ("item_id", StringType()), ("position", IntegerType()), ("exposure_ts", TimestampType()))
LABELS = ("click", "conversion", "conversion_value")  # what the models learn and fusion is judged on
SAMPLE_LABELS = (("click", IntegerType()), ("click_ts", TimestampType()), ("conversion", IntegerType()),
                 ("conversion_value", DoubleType()), ("labels_final", BooleanType()),
                 ("run_id", StringType()), ("dt", DateType()))


def feature_columns(features: FeaturesConf) -> list[tuple[str, DataType]]:
    """Configured feature columns that are not already sample keys, with their types."""
    keys = {name for name, _ in SAMPLE_KEYS}
    return ([(name, StringType()) for name in features.categorical if name not in keys]
            + [(name, DoubleType()) for name in features.numeric if name not in keys])


def samples_schema(features: FeaturesConf) -> StructType:
    fields = [*SAMPLE_KEYS, *feature_columns(features), *SAMPLE_LABELS]
    return StructType([StructField(name, kind) for name, kind in fields])


QUARANTINE_SCHEMA = StructType([
    StructField("source", StringType()), StructField("reason", StringType()), StructField("raw", StringType()),
    StructField("run_id", StringType()), StructField("dt", DateType()),
])

COUNTS = ("read", "accepted", "duplicates", "quarantined", "late", "out_of_range")  # per source of a run

RUNS_SCHEMA = StructType([
    StructField("run_id", StringType()), StructField("job", StringType()), StructField("run_date", DateType()),
    StructField("started_at", TimestampType()), StructField("finished_at", TimestampType()),
    StructField("status", StringType()), StructField("mode", StringType()),
    StructField("start_date", DateType()), StructField("end_date", DateType()),
    *[StructField(f"{source}_{count}", LongType()) for source in SOURCES for count in COUNTS],
    StructField("quarantined_by_reason", MapType(StringType(), LongType())),
    StructField("samples_rows", LongType()), StructField("final_partitions", LongType()),
    StructField("samples_version", LongType()), StructField("quarantine_version", LongType()),
    StructField("error", StringType()),
])

# ---------------------------------------------------------------------------------------------
# models

MODELS_SCHEMA = StructType([
    StructField("model_id", StringType()), StructField("model_type", StringType()),
    StructField("created_at", TimestampType()), StructField("train_start", DateType()),
    StructField("train_end", DateType()), StructField("training_set_version", LongType()),
    StructField("params", StringType()), StructField("metrics", StringType()),
    StructField("artifact_uri", StringType()),
    StructField("mlflow_run_id", StringType()), StructField("mlflow_version", LongType()),  # of mlflow.registered_model
    StructField("alias", StringType()),  # CHAMPION on one row at most, else null
    StructField("gate", StringType()),   # the gate's decision, one line
])

# ---------------------------------------------------------------------------------------------
# scores, fusion_weights

KEY_COLUMNS = ("impression_id", "request_id", "user_id", "item_id")
PREDICTIONS = ("p_ctr", "p_cvr", "p_ctcvr")
EXTRA_OUTPUTS = ("p_value",)  # written as null when the model has no such head

# The key columns are null when the input lacks them, so every date has one schema whatever
# input it was scored from.
SCORES_SCHEMA = StructType([
    *[StructField(name, StringType()) for name in KEY_COLUMNS],
    *[StructField(name, DoubleType()) for name in (*PREDICTIONS, *EXTRA_OUTPUTS)],
    StructField("score", DoubleType()), StructField("fusion", StringType()), StructField("model_id", StringType()),
    StructField("scored_at", TimestampType()), StructField("dt", DateType()),
])


def weight_column(term: str) -> str:
    """Name of the per-row weight column of a fusion ``term`` (dynamic strategy)."""
    return f"w_{term}"


WEIGHT_COLUMNS = tuple(weight_column(t) for t in TERMS)
SEGMENT_WEIGHTS_SCHEMA = StructType([  # what segment_weights computes; fusion_weights adds when and from what
    StructField("segment_column", StringType()), StructField("segment", StringType()),
    StructField("exposures", LongType()),
    *[StructField(name, DoubleType()) for name in WEIGHT_COLUMNS],
])
FUSION_WEIGHTS_SCHEMA = StructType([
    *SEGMENT_WEIGHTS_SCHEMA.fields,
    StructField("from_date", DateType()), StructField("to_date", DateType()),
    StructField("computed_at", TimestampType()), StructField("dt", DateType()),
])
