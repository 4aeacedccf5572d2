"""Input checks of a build-samples run, made before anything is written.

A nightly job must not turn a missing or broken source into a night of plausible but wrong
samples (every exposure with ``click = 0`` because the clicks folder moved, every record in
quarantine because a field was renamed). So, for every date the run rebuilds:

* every source has a partition (a ``dt=`` folder or Delta ``dt`` value), unless the conf lists it
  in ``raw.may_be_empty``; dates before the first exposure partition are before the logs begin
  and may be empty; the run's own date always needs exposures;
* a source listed in ``raw.success_markers`` has its marker file in the partition folder (the
  writer's "this date is complete" signal);
* no source sends more than ``raw.max_quarantined_share`` of a date's records to quarantine;
* every declared feature is present on at least ``raw.min_field_presence`` of a date's valid
  exposures (a column dropped from today's logs shows although older days still carry it).

Each failure is a ``PipelineError`` with one line naming the source, the date and the conf key.
The pure functions below decide from counts; ``build.py`` gathers the counts.
"""
from __future__ import annotations

import datetime as dt
from typing import Mapping, Optional, Sequence

from pyspark.sql import SparkSession

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io.hadoop import hadoop_file_system
from pipeline.logs.read import partition_path, present_dates
from pipeline.logs.schema import SOURCES

DateCounts = Mapping[dt.date, Mapping[str, int]]


def required_dates(rebuilt: Sequence[dt.date], present: Mapping[str, set[dt.date]], run_end: dt.date) -> list[dt.date]:
    """The rebuilt dates every source must cover: from the first exposure partition on (earlier
    dates are before the logs begin), and the run's own date in any case."""
    first = min(present.get("exposures", set()), default=None)
    return [d for d in rebuilt if d == run_end or (first is not None and d >= first)]


def missing_partitions(required: Sequence[dt.date], present: Mapping[str, set[dt.date]],
                       may_be_empty: Sequence[str]) -> list[tuple[str, dt.date]]:
    """(source, date) pairs without a partition, sources in ``SOURCES`` order, then by date."""
    return [(source, day) for source in SOURCES if source not in may_be_empty
            for day in required if day not in present.get(source, set())]


def over_quarantined(counts: Mapping[str, DateCounts], limit: float) -> Optional[str]:
    """What is wrong with the first source and date whose quarantined share exceeds ``limit``."""
    for source in SOURCES:
        for day, row in sorted(counts.get(source, {}).items()):
            if row["read"] and row["quarantined"] > limit * row["read"]:
                return (f"{row['quarantined']:,} of {row['read']:,} {source} records of {day} would go to quarantine "
                        f"({row['quarantined'] / row['read']:.0%} > raw.max_quarantined_share {limit:.0%}), "
                        "as if a field was renamed or retyped")
    return None


def absent_features(presence: DateCounts, limit: float, where: str) -> Optional[str]:
    """What is wrong with the first feature and date below the presence ``limit``.
    ``presence[day]`` holds ``_rows`` (valid exposures) and one count per feature."""
    for day, row in sorted(presence.items()):
        total = row["_rows"]
        for name, carried in row.items():
            if name != "_rows" and total and carried < limit * total:
                return (f"feature {name!r} is present on {carried:,} of {total:,} valid exposures of {day} "
                        f"(< raw.min_field_presence {limit:.0%}) at {where}")
    return None


def check_partitions(spark: SparkSession, cfg: Config, rebuilt: Sequence[dt.date], run_end: dt.date) -> None:
    """Raises when a source lacks a partition or its success marker for a date it must cover."""
    present = {source: present_dates(spark, cfg.raw_path(source), cfg.raw.format) for source in SOURCES}
    required = required_dates(rebuilt, present, run_end)
    missing = missing_partitions(required, present, cfg.raw.may_be_empty)
    if missing:
        source, day = missing[0]
        more = f" (and {len(missing) - 1} more source-date(s))" if len(missing) > 1 else ""
        raise PipelineError(f"missing input: no {source} for {day} at {_where(cfg, source, day)}{more}; "
                            f"if {source} may have no records on a date, add it to raw.may_be_empty")
    for source, marker in cfg.raw.success_markers.items():
        if cfg.raw.format == "delta":
            raise PipelineError(f"raw.success_markers.{source}: markers are files in partition folders; "
                                f"raw.format delta has none")
        for day in required:
            if day in present[source] and not _exists(spark, f"{partition_path(cfg.raw_path(source), day)}/{marker}"):
                raise PipelineError(f"incomplete input: {source} for {day} has no {marker} at "
                                    f"{partition_path(cfg.raw_path(source), day)} (raw.success_markers.{source})")


def check_shares(counts: Mapping[str, DateCounts], presence: DateCounts, cfg: Config) -> None:
    """Raises when a feature is absent from too many valid exposures of a date, or a source would
    send too large a share of a date's records to quarantine."""
    problem = (absent_features(presence, cfg.raw.min_field_presence, cfg.raw_path("exposures"))
               or over_quarantined(counts, cfg.raw.max_quarantined_share))
    if problem:
        raise PipelineError(f"suspicious input: {problem}; nothing written")


def _where(cfg: Config, source: str, day: dt.date) -> str:
    root = cfg.raw_path(source)
    return partition_path(root, day) if cfg.raw.format != "delta" else f"{root} (dt={day})"


def _exists(spark: SparkSession, path: str) -> bool:
    fs, hadoop_path = hadoop_file_system(spark, path)
    return fs.exists(hadoop_path)
