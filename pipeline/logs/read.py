"""Reading raw sources for a set of event dates, keeping every record and its original text.

Output of ``read_raw`` (one row per raw record; nothing is dropped here):
    dt          DATE    the raw event date (the ``dt=`` folder, or the Delta table's ``dt``)
    raw         STRING  the record as written (JSON line), or as JSON for Parquet/Delta rows
    malformed   BOOLEAN the record could not be parsed against the contract's schema
    <fields>            the contract's fields, typed (``ts`` as text)
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io.hadoop import hadoop_file_system
from pipeline.logs.schema import raw_schema

CORRUPT = "_corrupt_record"


def partition_path(root: str, day: dt.date) -> str:
    return f"{root.rstrip('/')}/dt={day.isoformat()}"


def present_dates(spark: SparkSession, root: str, fmt: str) -> set[dt.date]:
    """Event dates for which ``root`` holds a partition (folders ``dt=YYYY-MM-DD``, or the
    Delta table's distinct ``dt``)."""
    if fmt == "delta":
        from pipeline.io.delta import is_table

        if not is_table(spark, root):
            return set()
        return {row["dt"] for row in spark.read.format("delta").load(root).select("dt").distinct().collect()}
    fs, path = hadoop_file_system(spark, root)
    if not fs.exists(path):
        return set()
    dates = set()
    for status in fs.listStatus(path):
        name = status.getPath().getName()
        if status.isDirectory() and name.startswith("dt="):
            try:
                dates.add(dt.date.fromisoformat(name[3:]))
            except ValueError:
                continue  # not a partition folder of ours
    return dates


def read_raw(spark: SparkSession, cfg: Config, source: str, dates: Iterable[dt.date]) -> DataFrame:
    """Reads ``source`` for the given event dates that exist (see ``present_dates``).

    Raises:
        PipelineError: when a declared feature column is absent from Parquet or Delta exposures.
    """
    root, fmt = cfg.raw_path(source), cfg.raw.format
    schema = raw_schema(source, cfg.features.categorical, cfg.features.numeric)
    wanted = sorted(set(dates) & present_dates(spark, root, fmt))
    if not wanted:
        return _empty(spark, schema)
    if fmt == "json":
        lines = (spark.read.option("basePath", root)
                 .text([partition_path(root, d) for d in wanted])  # .jsonl and .jsonl.gz alike
                 .withColumnRenamed("value", "raw"))
        parsed = F.from_json("raw", schema.add(CORRUPT, "string"),
                             {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
        return (lines.withColumn("_p", parsed)
                .select(F.col("dt").cast("date").alias("dt"), "raw",
                        (F.col(f"_p.{CORRUPT}").isNotNull() | F.col("_p").isNull()).alias("malformed"),
                        *[F.col(f"_p.{f.name}").alias(f.name) for f in schema.fields]))
    if fmt == "parquet":
        table = spark.read.option("basePath", root).parquet(*[partition_path(root, d) for d in wanted])
    else:
        table = spark.read.format("delta").load(root).where(F.col("dt").isin(wanted))
    missing = [f.name for f in schema.fields if f.name not in table.columns]
    if missing:
        raise PipelineError(f"{source} at {root} lack the column(s) {missing} "
                            f"(required by the raw-log contract or declared in features)")
    typed = [_cast(F.col(f.name), f.dataType.simpleString()).alias(f.name) for f in schema.fields]
    return table.select(F.col("dt").cast("date").alias("dt"),
                        F.to_json(F.struct(*[f.name for f in schema.fields])).alias("raw"),
                        F.lit(False).alias("malformed"), *typed)


def _cast(column: Column, type_name: str) -> Column:
    return column.cast("string") if type_name == "string" else column.try_cast(type_name)


def _empty(spark: SparkSession, schema) -> DataFrame:
    fields = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema.fields)
    return spark.createDataFrame([], f"dt date, raw string, malformed boolean, {fields}")
