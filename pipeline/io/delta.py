"""Delta Lake reads and writes: the only module that writes tables.

Every write replaces exactly the ``dt`` partitions a run owns (``replaceWhere``), so re-running a
job for a date never appends duplicates and never touches other dates. A Delta commit is atomic:
a write that fails leaves the previous version as the table's current version.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Iterable, Optional

from pyspark.sql import DataFrame, SparkSession

from pipeline.errors import PipelineError

PARTITION_COLUMN = "dt"


def dates_predicate(dates: Iterable[dt.date], column: str = PARTITION_COLUMN) -> str:
    """A SQL predicate selecting the given dates: ``dt IN (DATE'2026-10-01', ...)``.

    Only ``date`` objects are accepted, so no user text reaches the SQL.
    """
    values = sorted(set(dates))
    if not values:
        raise ValueError("at least one date is needed")
    for value in values:
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise TypeError(f"expected datetime.date, got {value!r}")
    return f"{column} IN ({', '.join(f'DATE{d.isoformat()!r}' for d in values)})"


def replace_partitions(df: DataFrame, path: str, dates: Iterable[dt.date],
                       *, partition_column: str = PARTITION_COLUMN) -> int:
    """Writes ``df`` so that it replaces exactly the ``dates`` partitions of the table at ``path``.

    Creates the table (partitioned by ``partition_column``) on first write. Dates listed but absent
    from ``df`` end up empty; a row of ``df`` outside ``dates`` fails the write and changes nothing.

    Args:
        df: rows to write; must have ``partition_column`` of type DATE.
        path: the table's location.
        dates: the partitions this write owns.
        partition_column: the partition column.

    Returns:
        The table version this write committed.
    """
    predicate = dates_predicate(dates, partition_column)
    (df.write.format("delta")
     .mode("overwrite")
     .option("replaceWhere", predicate)
     .partitionBy(partition_column)
     .save(path))
    return current_version(df.sparkSession, path)


def append(df: DataFrame, path: str) -> int:
    """Appends ``df`` (for log-like tables such as ``runs``); returns the version committed."""
    df.write.format("delta").mode("append").save(path)
    return current_version(df.sparkSession, path)


def absolute_uri(path: str) -> str:
    """``path`` unchanged when it has a scheme (``s3://``, ``dbfs:/``), else made absolute."""
    if ":" in path.split("/", 1)[0]:
        return path
    return os.path.abspath(path)


def is_table(spark: SparkSession, path: str) -> bool:
    """True when ``path`` holds a Delta table."""
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def current_version(spark: SparkSession, path: str) -> int:
    """The latest committed version of the table at ``path``."""
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def read_table(spark: SparkSession, path: str, version: Optional[int] = None) -> DataFrame:
    """Reads the table at ``path``, at ``version`` when given (time travel).

    Raises:
        PipelineError: when ``path`` is not a Delta table.
    """
    if not is_table(spark, path):
        raise PipelineError(f"no Delta table at {path}")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    return reader.load(path)


def register_table(spark: SparkSession, database: Optional[str], name: str, path: str) -> None:
    """Registers the table at ``path`` as ``database.name`` in the Spark catalog (no-op without
    a database). Idempotent; the table's data stays at ``path``."""
    if not database:
        return
    for identifier in (database, name):
        if not identifier.replace("_", "").isalnum():
            raise PipelineError(f"bad catalog name {identifier!r} (letters, digits and _ only)")
    location = absolute_uri(path).replace("\\", "\\\\").replace("'", "\\'")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    spark.sql(f"CREATE TABLE IF NOT EXISTS `{database}`.`{name}` USING DELTA LOCATION '{location}'")
