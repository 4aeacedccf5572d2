"""``pipeline import-aliccp``: the public Ali-CCP files -> ``samples``, ``quarantine`` and one ``runs`` row.

Reads ``sample_skeleton_<split>.csv`` and ``common_features_<split>.csv`` from one folder, parses
and joins them with the pure transforms of ``pipeline.aliccp.parse``, then replaces exactly the
synthetic ``dt`` partitions of the imported splits (``SplitDays``) in ``samples`` and
``quarantine``: a re-import replaces, never appends, and leaves every other date alone.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Sequence

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import runs
from pipeline.aliccp import parse as P
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.logs import schema
from pipeline.tables import samples_schema

JOB = "import-aliccp"
SKELETON_FILE, COMMON_FILE = "sample_skeleton_{split}.csv", "common_features_{split}.csv"
SPLIT_COUNTS = ("lines", "samples", "clicks", "conversions", "conversion_without_click", "quarantined",
                "common_lines", "common_malformed", "common_duplicates")


@dataclass(frozen=True)
class ImportSummary:
    """What an import read and wrote.

    ``counts[split]`` has, per ``SPLIT_COUNTS``: skeleton ``lines`` read, ``samples`` written (of
    which ``clicks`` and ``conversions``), ``conversion_without_click`` (samples whose conversion
    flag was dropped because they were not clicked), skeleton lines ``quarantined``, and the
    common-features ``common_lines`` read, ``common_malformed`` (quarantined) and
    ``common_duplicates`` (repeated indexes, counted once). For each split,
    ``lines == samples + quarantined``.
    """

    run_id: str
    days: P.SplitDays
    splits: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    quarantined_by_reason: dict[str, int]
    samples_version: int
    quarantine_version: int
    seconds: float

    @property
    def dates(self) -> list[dt.date]:
        """The ``dt`` partitions the import owns."""
        return self.days.owned(self.splits)

    def line(self) -> str:
        def one(split: str) -> str:
            c, days = self.counts[split], self.days.dates(split)
            return (f"{split} {days[0]}..{days[-1]}: {c['lines']:,} lines -> {c['samples']:,} samples "
                    f"({c['clicks']:,} clicks, {c['conversions']:,} conversions, "
                    f"{c['conversion_without_click']:,} conversion flag(s) without a click ignored), "
                    f"{c['quarantined']:,} quarantined; common features {c['common_lines']:,} lines/"
                    f"{c['common_malformed']:,} malformed/{c['common_duplicates']:,} dup")

        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(self.quarantined_by_reason.items(), key=lambda kv: -kv[1]))
        return (f"import-aliccp {'; '.join(one(s) for s in self.splits)}; "
                f"quarantined by reason: {reasons or 'none'}; {self.seconds:.1f} s")


def import_aliccp(spark: SparkSession, cfg: Config, source_dir: str, *, days: P.SplitDays = P.SplitDays(),
                  splits: Sequence[str] = P.SPLITS) -> ImportSummary:
    """Imports the Ali-CCP files in ``source_dir``; on failure records a ``failed`` run and re-raises.

    Args:
        spark: the session.
        cfg: the configuration (table paths; ``features`` chooses the feature columns written,
            each one of ``parse.AVAILABLE_FEATURES``).
        source_dir: the folder holding the four files (any path Spark reads: local, ``s3://``...).
        days: the synthetic dates of each split.
        splits: the splits to import (``train``, ``test`` or both); only their dates are replaced.

    Returns:
        The summary; ``summary.line()`` is one line for the console.

    Raises:
        PipelineError: a file is missing, a configured feature cannot be filled from Ali-CCP,
            or the ``samples`` table at the configured path has other columns.
    """
    splits = tuple(dict.fromkeys(splits))
    unknown = [s for s in splits if s not in P.SPLITS]
    if not splits or unknown:
        raise PipelineError(f"bad Ali-CCP split(s) {unknown or list(splits)} (expected train and/or test)")
    _require_features(cfg)
    dates = days.owned(splits)
    run_id = runs.new_id(JOB)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        return _import(spark, cfg, source_dir, days, splits, dates, run_id, started)
    except Exception as err:  # noqa: BLE001 (recorded, then re-raised unchanged)
        runs.record_failure(spark, cfg, _run_row(run_id, dates, started, "failed", error=runs.error_line(err)))
        raise


def _import(spark: SparkSession, cfg: Config, source_dir: str, days: P.SplitDays, splits: tuple[str, ...],
            dates: list[dt.date], run_id: str, started: dt.datetime) -> ImportSummary:
    clock = time.perf_counter()
    _require_samples_layout(spark, cfg)
    skeleton_lines = _read_lines(spark, source_dir, SKELETON_FILE, splits)
    common_lines = _read_lines(spark, source_dir, COMMON_FILE, splits)
    split = F.col(P.SPLIT)
    cached: list[DataFrame] = []

    def cache(df: DataFrame) -> DataFrame:  # each frame feeds the counts and a table write
        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return cached[-1]

    try:
        common = cache(P.parse_common_features(common_lines, split, days))
        classified = cache(P.classify_samples(P.parse_skeleton(skeleton_lines, split, days),
                                              P.unique_common_features(common)))
        counts, reasons = _counts(classified, common, splits)
        samples = P.to_samples(classified, features=cfg.features, run_id=run_id)
        samples_version = delta.replace_partitions(samples, cfg.table_path("samples"), dates)
        quarantine = P.to_quarantine(classified, common, run_id=run_id)
        quarantine_version = delta.replace_partitions(quarantine, cfg.table_path("quarantine"), dates)
    finally:
        for df in cached:
            df.unpersist()
    summary = ImportSummary(run_id=run_id, days=days, splits=splits, counts=counts, quarantined_by_reason=reasons,
                            samples_version=samples_version, quarantine_version=quarantine_version,
                            seconds=time.perf_counter() - clock)
    runs.append_run(spark, cfg, _run_row(run_id, dates, started, "succeeded", summary=summary))
    for name in ("samples", "quarantine", "runs"):
        delta.register_table(spark, cfg.storage.database, name, cfg.table_path(name))
    return summary


def _require_features(cfg: Config) -> None:
    """Every configured feature must be one the import fills (else training would fail later)."""
    unavailable = [name for name in cfg.features.categorical if name not in P.AVAILABLE_FEATURES]
    unavailable += list(cfg.features.numeric)
    if unavailable:
        raise PipelineError(f"features {unavailable} cannot be filled from Ali-CCP; set features.categorical "
                            f"to some of {list(P.AVAILABLE_FEATURES)} and features.numeric to []")


def _require_samples_layout(spark: SparkSession, cfg: Config) -> None:
    """An existing ``samples`` table must have the columns this import writes: Delta would
    reject the write with a long schema error, or (for a subset) leave other columns NULL."""
    path = cfg.table_path("samples")
    if not delta.is_table(spark, path):
        return
    have = delta.read_table(spark, path).columns
    want = [f.name for f in samples_schema(cfg.features).fields]
    if sorted(have) != sorted(want):
        raise PipelineError(f"the samples table at {path} has other columns than this import writes "
                            f"(extra {sorted(set(have) - set(want))}, missing {sorted(set(want) - set(have))}); "
                            f"import into another storage.root or tables.samples")


def _read_lines(spark: SparkSession, source_dir: str, pattern: str, splits: tuple[str, ...]) -> DataFrame:
    """The lines of one file per split, with a ``split`` column."""
    frames = []
    for split in splits:
        path = f"{source_dir.rstrip('/')}/{pattern.format(split=split)}"
        try:
            lines = spark.read.text(path)
        except AnalysisException as err:
            if err.getCondition() == "PATH_NOT_FOUND":
                raise PipelineError(f"missing input: no Ali-CCP file {path}") from None
            raise
        frames.append(lines.select(F.lit(split).alias(P.SPLIT), F.col("value")))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _counts(classified: DataFrame, common: DataFrame,
            splits: tuple[str, ...]) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """``SPLIT_COUNTS`` per split and the quarantined lines per reason, in two aggregations."""
    def total(predicate: Column) -> Column:
        return F.sum(predicate.cast("long"))

    counts = {split: dict.fromkeys(SPLIT_COUNTS, 0) for split in splits}
    reasons: dict[str, int] = {}
    is_click = F.col(P.CLICK) == 1
    for r in classified.groupBy(P.SPLIT, P.REASON).agg(
            F.count(F.lit(1)).alias("lines"), total(is_click).alias("clicks"),
            total(is_click & (F.col(P.CONVERSION) == 1)).alias("conversions"),
            total(P.is_conversion_without_click()).alias("conversion_without_click")).collect():
        c = counts[r[P.SPLIT]]
        c["lines"] += r["lines"]
        if r[P.REASON] is None:
            c.update(samples=r["lines"], clicks=r["clicks"], conversions=r["conversions"],
                     conversion_without_click=r["conversion_without_click"])
        else:
            c["quarantined"] += r["lines"]
            reasons[r[P.REASON]] = reasons.get(r[P.REASON], 0) + r["lines"]
    is_malformed = F.col(P.REASON).isNotNull()
    for r in common.groupBy(P.SPLIT).agg(
            F.count(F.lit(1)).alias("lines"), total(is_malformed).alias("malformed"),
            F.count_distinct(F.when(~is_malformed, F.col(P.COMMON_INDEX))).alias("indexes")).collect():
        # Well-formed lines beyond one per index are the duplicates unique_common_features drops.
        counts[r[P.SPLIT]].update(common_lines=r["lines"], common_malformed=r["malformed"],
                                  common_duplicates=r["lines"] - r["malformed"] - r["indexes"])
        if r["malformed"]:
            reasons[schema.MALFORMED] = reasons.get(schema.MALFORMED, 0) + r["malformed"]
    return counts, reasons


def _run_row(run_id: str, dates: list[dt.date], started: dt.datetime, status: str, *,
             summary: ImportSummary | None = None, error: str | None = None) -> dict:
    """One ``runs`` row: skeleton lines count as exposures (one per impression); clicks and
    conversions have no source of their own, so their counts stay NULL."""
    row = {"run_id": run_id, "job": JOB, "run_date": dates[-1], "started_at": started,
           "finished_at": dt.datetime.now(dt.timezone.utc), "status": status, "mode": "import",
           "start_date": dates[0], "end_date": dates[-1], "error": error}
    if summary:
        per_split = summary.counts.values()
        row.update(exposures_read=sum(c["lines"] for c in per_split),
                   exposures_accepted=sum(c["samples"] for c in per_split),
                   exposures_quarantined=sum(c["quarantined"] for c in per_split),
                   exposures_duplicates=0, exposures_late=0, exposures_out_of_range=0,
                   quarantined_by_reason=summary.quarantined_by_reason,
                   samples_rows=sum(c["samples"] for c in per_split), final_partitions=len(dates),
                   samples_version=summary.samples_version, quarantine_version=summary.quarantine_version)
    return row
