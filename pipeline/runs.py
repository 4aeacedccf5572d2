"""The ids of runs and models, and the ``runs`` table's rows (one per build-samples or
import-aliccp run, ``pipeline.tables.RUNS_SCHEMA``)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Mapping, Optional

from pyspark.sql import SparkSession

from pipeline.config import Config
from pipeline.io import delta
from pipeline.tables import RUNS_SCHEMA


def new_id(prefix: str, day: Optional[dt.date] = None) -> str:
    """``prefix-[YYYYMMDD-]YYYYMMDDTHHMMSS-xxxxxx``: the day it is for (when given), the UTC time
    it was made and 6 random hex digits, so ids of one prefix sort by day, then by creation."""
    made = dt.datetime.now(dt.timezone.utc)
    return "-".join([prefix, *([f"{day:%Y%m%d}"] if day else []), f"{made:%Y%m%dT%H%M%S}", uuid.uuid4().hex[:6]])


def error_line(err: BaseException) -> str:
    """The first line of an error's message (at most 1,000 characters), else its type's name."""
    text = str(err).strip()
    return text.splitlines()[0][:1000] if text else type(err).__name__


def append_run(spark: SparkSession, cfg: Config, row: Mapping[str, object]) -> None:
    """Appends one ``runs`` row; the columns ``row`` lacks are null."""
    full = {f.name: row.get(f.name) for f in RUNS_SCHEMA.fields}
    delta.append(spark.createDataFrame([full], RUNS_SCHEMA), cfg.table_path("runs"))


def record_failure(spark: SparkSession, cfg: Config, row: Mapping[str, object]) -> None:
    """Appends the ``failed`` row of a run, and swallows an error doing so: the run's own error
    (which the caller re-raises) matters more than its log row."""
    try:
        append_run(spark, cfg, row)
    except Exception:  # noqa: BLE001
        pass
