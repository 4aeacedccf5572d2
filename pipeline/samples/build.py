"""``pipeline build-samples``: raw logs -> ``samples``, ``quarantine`` and one ``runs`` row.

A nightly run (``--date D``) rebuilds from the oldest partition that is not yet final (at most
``labels.max_rebuild_days`` back), so a night after missed nights leaves the tables of a backfill.
Checks the input of every rebuilt date first (``pipeline.samples.checks``: partitions present,
success markers, quarantined share, feature presence). Reads each source once and checks and
labels it with pure transforms (``pipeline.logs.validate``, ``pipeline.samples.labels``); the
classified records are cached (without the text of records that are not quarantined), since
three actions use them: one aggregate gives every count the checks and the ``runs`` row need,
then, only when the checks pass, the run replaces exactly its ``dt`` partitions of ``samples``
and ``quarantine``. A run that fails writes a ``failed`` row to ``runs`` and leaves every table
at its previous version (or, at worst, with only whole, committed versions: each Delta write is
atomic).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import runs
from pipeline.config import Config
from pipeline.io import delta
from pipeline.logs.read import read_raw
from pipeline.logs.schema import SOURCES
from pipeline.logs.validate import check_records
from pipeline.samples import checks
from pipeline.samples import labels as L
from pipeline.tables import COUNTS, QUARANTINE_SCHEMA, feature_columns

JOB = "build-samples"


@dataclass(frozen=True)
class BuildSummary:
    run_id: str
    mode: str
    dates: L.RunDates
    counts: dict[str, dict[str, int]]
    quarantined_by_reason: dict[str, int]
    samples_rows: int
    final_partitions: int
    samples_version: int
    quarantine_version: int
    seconds: float

    def line(self) -> str:
        e = self.counts["exposures"]
        sources = "; ".join(
            f"{s} {c['read']:,} read/{c['accepted']:,} ok/{c['duplicates']:,} dup/{c['quarantined']:,} quar"
            f"/{c['late']:,} late/{c['out_of_range']:,} oor" for s, c in self.counts.items())
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(self.quarantined_by_reason.items(), key=lambda kv: -kv[1]))
        return (f"build-samples {self.mode} {self.dates.start}..{self.dates.end}: "
                f"{e['read']:,} exposure lines -> {self.samples_rows:,} samples "
                f"({self.final_partitions} of {len(self.dates.rebuilt)} partitions final); {sources}; "
                f"quarantined by reason: {reasons or 'none'}; {self.seconds:.1f} s")


def nightly_run_dates(spark: SparkSession, cfg: Config, day: dt.date) -> L.RunDates:
    """The dates the nightly run for ``day`` rebuilds: see ``labels.healing_start``."""
    oldest = day - dt.timedelta(days=cfg.labels.max_rebuild_days)
    finality: dict[dt.date, bool] = {}
    path = cfg.table_path("samples")
    if delta.is_table(spark, path):
        span = delta.read_table(spark, path).where(F.col("dt").between(F.lit(oldest), F.lit(day)))
        finality = {d: final for d, (_, final) in L.partition_finality(span).items()}
    return L.backfill_dates(L.healing_start(day, finality, cfg.labels), day, cfg.labels)


def build_nightly(spark: SparkSession, cfg: Config, day: dt.date) -> BuildSummary:
    """``build-samples --date D``: the nightly run, healing missed nights."""
    return build_samples(spark, cfg, nightly_run_dates(spark, cfg, day), "nightly")


def build_samples(spark: SparkSession, cfg: Config, dates: L.RunDates, mode: str) -> BuildSummary:
    """Runs build-samples for ``dates``; on failure records a ``failed`` run and re-raises."""
    run_id = runs.new_id(JOB, dates.end)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        summary = _build(spark, cfg, dates, mode, run_id, started)
    except Exception as err:  # noqa: BLE001 (recorded, then re-raised unchanged)
        runs.record_failure(spark, cfg, _run_row(run_id, mode, dates, started, "failed", error=runs.error_line(err)))
        raise
    return summary


def _build(spark: SparkSession, cfg: Config, dates: L.RunDates, mode: str, run_id: str,
           started: dt.datetime) -> BuildSummary:
    clock = time.perf_counter()
    checks.check_partitions(spark, cfg, dates.rebuilt, dates.end)
    checked = {source: check_records(read_raw(spark, cfg, source, dates.read), source) for source in SOURCES}
    cached: list[DataFrame] = []

    def cache(df: DataFrame) -> DataFrame:  # each classified source is used by several outputs
        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return cached[-1]

    try:
        exposures = cache(L.for_outputs(L.classify_exposures(checked["exposures"], dates)))
        clicks = cache(L.for_outputs(L.classify_children(checked["clicks"], L.exposure_parents(exposures), "clicks",
                                                         dates, cfg.labels.click_window_hours * 3600)))
        conversions = cache(L.for_outputs(L.classify_children(checked["conversions"], L.click_parents(clicks),
                                                              "conversions", dates,
                                                              cfg.labels.attribution_window_days * 86400)))
        classified = {"exposures": exposures, "clicks": clicks, "conversions": conversions}
        features = [name for name, _ in feature_columns(cfg.features)]
        outcomes = L.outcome_counts(classified, features).collect()  # one job: every check and count
        by_date = L.date_counts(outcomes)
        checks.check_shares(by_date, L.feature_presence(outcomes, features), cfg)
        counts = {s: L.total_counts(by_date.get(s, {})) for s in SOURCES}
        reasons = L.reason_counts(outcomes)
        quarantine = _union([L.quarantine_rows(df, s, run_id) for s, df in classified.items()])
        samples = L.label_samples(exposures, clicks, conversions, features=cfg.features, labels=cfg.labels,
                                  run=dates, run_id=run_id)
        samples_version = delta.replace_partitions(samples, cfg.table_path("samples"), dates.rebuilt)
        quarantine_version = delta.replace_partitions(quarantine, cfg.table_path("quarantine"), dates.rebuilt)
    finally:
        for df in cached:
            df.unpersist()
    summary = BuildSummary(run_id=run_id, mode=mode, dates=dates, counts=counts, quarantined_by_reason=reasons,
                           samples_rows=counts["exposures"]["accepted"],  # one sample per accepted exposure
                           final_partitions=sum(L.is_final(d, dates, cfg.labels) for d in dates.rebuilt),
                           samples_version=samples_version, quarantine_version=quarantine_version,
                           seconds=time.perf_counter() - clock)
    runs.append_run(spark, cfg, _run_row(run_id, mode, dates, started, "succeeded", summary=summary))
    for name in ("samples", "quarantine", "runs"):
        delta.register_table(spark, cfg.storage.database, name, cfg.table_path(name))
    return summary


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out.select(*[F.col(f.name).cast(f.dataType) for f in QUARANTINE_SCHEMA.fields])


def _run_row(run_id: str, mode: str, dates: L.RunDates, started: dt.datetime, status: str, *,
             summary: BuildSummary | None = None, error: str | None = None) -> dict:
    """One ``runs`` row; counts and versions stay NULL for a run that failed."""
    row = {"run_id": run_id, "job": JOB, "run_date": dates.end, "started_at": started,
           "finished_at": dt.datetime.now(dt.timezone.utc), "status": status, "mode": mode,
           "start_date": dates.start, "end_date": dates.end, "error": error}
    if summary:
        row.update({f"{source}_{count}": summary.counts[source][count] for source in SOURCES for count in COUNTS})
        row.update(quarantined_by_reason=summary.quarantined_by_reason, samples_rows=summary.samples_rows,
                   final_partitions=summary.final_partitions, samples_version=summary.samples_version,
                   quarantine_version=summary.quarantine_version)
    return row
