"""Output schemas of build-samples: ``samples``, ``quarantine`` and ``runs`` (design section 3)."""
from __future__ import annotations

from pyspark.sql.types import (BooleanType, DataType, DateType, DoubleType, IntegerType, LongType,
                               MapType, StringType, StructField, StructType, TimestampType)

from pipeline.config import FeaturesConf

SAMPLE_KEYS = (("impression_id", StringType()), ("request_id", StringType()), ("user_id", StringType()),
               ("item_id", StringType()), ("position", IntegerType()), ("exposure_ts", TimestampType()))
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

COUNTS = ("read", "accepted", "duplicates", "quarantined", "late", "out_of_range")
SOURCES = ("exposures", "clicks", "conversions")

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
