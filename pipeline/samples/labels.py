"""Entire-space labelling: pure transforms from checked raw records to samples.

A run rebuilds the exposure dates ``[start, end]`` as of ``end`` (the last event date it reads).
It *owns* the raw records whose event date (``dt`` folder) lies in ``[start, end]``: those are
counted, quarantined and labelled. It also reads ``max_delay_days`` earlier dates, only to find
the parents of owned clicks and conversions.

Every owned record gets one ``status``:
    accepted      valid, first copy, parent found (children) / own date = folder date (exposures)
    duplicate     a later copy of a valid record with the same id
    quarantined   with ``quarantine_reason`` (record checks, unknown parent, earlier than parent)
    out_of_range  exposures: ``ts`` on another date than the folder; children: parent not found,
                  but it could still arrive on a date not read (the day after ``end``)
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import reduce
from typing import Iterable, Mapping, Sequence

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from pipeline.config import FeaturesConf, LabelsConf
from pipeline.errors import PipelineError
from pipeline.logs import schema
from pipeline.logs.validate import EVENT_TS, IS_DUPLICATE, REASON
from pipeline.tables import COUNTS, SAMPLE_KEYS, feature_columns

STATUS = "status"
QUARANTINE_REASON = "quarantine_reason"
ACCEPTED, DUPLICATE, QUARANTINED, OUT_OF_RANGE = "accepted", "duplicate", "quarantined", "out_of_range"
IS_LATE = "is_late"
ATTRIBUTED = "attributed"


@dataclass(frozen=True)
class RunDates:
    """The exposure dates a run rebuilds, ``[start, end]``, and the first date it reads."""

    start: dt.date
    end: dt.date
    read_from: dt.date

    @property
    def rebuilt(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    @property
    def read(self) -> list[dt.date]:
        return [self.read_from + dt.timedelta(days=i) for i in range((self.end - self.read_from).days + 1)]

    def owns(self, day: Column) -> Column:
        return day.between(F.lit(self.start), F.lit(self.end))


def healing_start(day: dt.date, finality: Mapping[dt.date, bool], labels: LabelsConf) -> dt.date:
    """The first date the nightly run for ``day`` rebuilds: the oldest date, at most
    ``labels.max_rebuild_days`` before ``day``, whose partition is missing or not final
    (``finality``: the ``samples`` partitions of that span and whether their labels are final),
    else ``day - lookback_days`` as every night. Missing dates before the first partition are
    before the logs begin. A night after missed nights thus leaves the tables of a backfill."""
    usual = day - dt.timedelta(days=labels.lookback_days)
    oldest = day - dt.timedelta(days=labels.max_rebuild_days)
    first = max(min(finality, default=usual), oldest)
    behind = (first + dt.timedelta(days=i) for i in range((usual - first).days))
    return next((d for d in behind if not finality.get(d, False)), usual)


def backfill_dates(start: dt.date, end: dt.date, labels: LabelsConf) -> RunDates:
    return RunDates(start=start, end=end, read_from=start - dt.timedelta(days=labels.max_delay_days))


def is_final(day: dt.date, run: RunDates, labels: LabelsConf) -> bool:
    """A partition's labels are final once every window of its exposures closed by the run's end."""
    return day + dt.timedelta(days=labels.lookback_days) <= run.end


def partition_finality(samples: DataFrame) -> dict[dt.date, tuple[int, bool]]:
    """Per ``dt`` of written ``samples``: its rows and whether all their labels are final (one
    aggregate)."""
    rows = samples.groupBy("dt").agg(F.count(F.lit(1)).alias("rows"),
                                     F.min(F.col("labels_final").cast("int")).alias("final")).collect()
    return {row["dt"]: (int(row["rows"]), bool(row["final"])) for row in rows}


def require_final(finality: Mapping[dt.date, tuple[int, bool]], day: dt.date, *, missing: str,
                  not_final: str) -> int:
    """The rows of ``day`` in ``finality`` (``partition_finality``).

    Raises:
        PipelineError: ``day`` has no samples, or labels that are not final yet; the message ends
            with ``missing`` or ``not_final``, what to do about it.
    """
    rows, final = finality.get(day, (0, False))
    if not rows:
        raise PipelineError(f"no samples for {day}{missing}")
    if not final:
        raise PipelineError(f"samples for {day} are not final yet (labels_final = false); {not_final}")
    return rows


def classify_exposures(exposures: DataFrame, run: RunDates) -> DataFrame:
    """Adds ``status`` and ``quarantine_reason`` to checked exposures."""
    is_on_its_date = F.to_date(EVENT_TS) == F.col("dt")
    status = (F.when(F.col(REASON).isNotNull(), QUARANTINED)
              .when(F.col(IS_DUPLICATE), DUPLICATE)
              .when(~is_on_its_date, OUT_OF_RANGE)
              .otherwise(ACCEPTED))
    return (exposures.withColumn(STATUS, status)
            .withColumn(QUARANTINE_REASON, F.col(REASON))
            .withColumn("owned", run.owns(F.col("dt"))))


def for_outputs(classified: DataFrame) -> DataFrame:
    """Classified records with only what the outputs use: the record text stays on quarantined
    records (the only ones written with it) and the parse columns (``ts`` text, ``malformed``)
    go, which keeps the records a run holds between its outputs small."""
    return (classified.withColumn("raw", F.when(F.col(STATUS) == QUARANTINED, F.col("raw")))
            .drop("ts", "malformed"))


def valid_first_copies(checked: DataFrame) -> DataFrame:
    """Records that passed the record checks, one per id: the candidates for being a parent."""
    return checked.where(F.col(REASON).isNull() & ~F.col(IS_DUPLICATE))


def classify_children(children: DataFrame, parents: DataFrame, source: str, run: RunDates,
                      window_seconds: int) -> DataFrame:
    """Matches checked clicks (or conversions) to their parents and adds ``status``,
    ``quarantine_reason``, ``delay_s``, ``is_late`` and ``attributed``.

    Args:
        children: checked records of ``source`` over the read dates.
        parents: one row per parent id: the id column, ``parent_ts`` and ``parent_attributable``
            (the parent is a sample this run labels: an accepted exposure, or an attributed click).
        source: ``clicks`` or ``conversions``.
        run: the run's dates.
        window_seconds: the click window or the attribution window.
    """
    parent_field, _ = schema.PARENT[source]
    c = children.alias("c")
    p = parents.alias("p")
    joined = c.join(p, on=F.col(f"c.{parent_field}") == F.col(f"p.{parent_field}"), how="left") \
        .select("c.*", "p.parent_ts", "p.parent_attributable")
    has_parent = F.col("parent_ts").isNotNull()
    parent_could_be_unread = F.col("dt") >= F.lit(run.end)  # it may still land on end + 1
    join_reason = (F.when(~has_parent & ~parent_could_be_unread, schema.UNKNOWN_PARENT[source])
                   .when(has_parent & (F.col(EVENT_TS) < F.col("parent_ts")), schema.BEFORE_PARENT[source]))
    is_valid = F.col(REASON).isNull() & ~F.col(IS_DUPLICATE)
    quarantine_reason = F.coalesce(F.col(REASON), F.when(is_valid, join_reason))
    status = (F.when(quarantine_reason.isNotNull(), QUARANTINED)
              .when(F.col(IS_DUPLICATE), DUPLICATE)
              .when(~has_parent, OUT_OF_RANGE)
              .otherwise(ACCEPTED))
    delay_s = F.col(EVENT_TS).cast("long") - F.col("parent_ts").cast("long")
    is_accepted = F.col(STATUS) == ACCEPTED
    return (joined.withColumn(QUARANTINE_REASON, quarantine_reason)
            .withColumn(STATUS, status)
            .withColumn("delay_s", delay_s)
            .withColumn(IS_LATE, is_accepted & (F.col("delay_s") > window_seconds))
            .withColumn(ATTRIBUTED, is_accepted & ~F.col(IS_LATE) & F.coalesce(F.col("parent_attributable"), F.lit(False)))
            .withColumn("owned", run.owns(F.col("dt")))
            .drop("parent_attributable"))


def exposure_parents(exposures: DataFrame) -> DataFrame:
    """Parents of clicks: valid exposures, attributable when they are accepted samples of the run."""
    return valid_first_copies(exposures).select(
        "impression_id", F.col(EVENT_TS).alias("parent_ts"),
        ((F.col(STATUS) == ACCEPTED) & F.col("owned")).alias("parent_attributable"))


def click_parents(clicks: DataFrame) -> DataFrame:
    """Parents of conversions: well-formed clicks (record checks passed), attributable when the
    click itself is attributed to a sample of the run."""
    return valid_first_copies(clicks).select("click_id", F.col(EVENT_TS).alias("parent_ts"),
                                             F.col(ATTRIBUTED).alias("parent_attributable"))


def label_samples(exposures: DataFrame, clicks: DataFrame, conversions: DataFrame, *,
                  features: FeaturesConf, labels: LabelsConf, run: RunDates, run_id: str) -> DataFrame:
    """One sample per accepted owned exposure, with click, conversion and value labels.

    ``click_ts`` is the first attributed click; ``conversion_value`` sums the attributed
    conversions of every attributed click of the impression. A partition is ``labels_final``
    once ``lookback_days`` have passed after it by the run's last date.
    """
    attributed_clicks = clicks.where(F.col(ATTRIBUTED)).select("click_id", "impression_id", EVENT_TS)
    click_labels = attributed_clicks.groupBy("impression_id").agg(F.min(EVENT_TS).alias("click_ts"))
    conversion_labels = (conversions.where(F.col(ATTRIBUTED)).alias("v")
                         .join(attributed_clicks.alias("k"), on=F.col("v.click_id") == F.col("k.click_id"), how="inner")
                         .groupBy(F.col("k.impression_id").alias("impression_id"))
                         .agg(F.sum("v.value").alias("conversion_value")))
    samples = exposures.where((F.col(STATUS) == ACCEPTED) & F.col("owned")).alias("e")
    # Exposures and clicks are both partitioned by impression_id already (record checks, parent
    # join), so the click labels join without moving the exposures; the conversion labels are a
    # few per hundred exposures and go to every task instead.
    labelled = (samples.join(click_labels.alias("cl"), on="impression_id", how="left")
                .join(F.broadcast(conversion_labels).alias("vl"), on="impression_id", how="left"))
    is_final = F.date_add(F.col("dt"), labels.lookback_days) <= F.lit(run.end)
    keys = [F.col(EVENT_TS).alias("exposure_ts") if name == "exposure_ts" else F.col(name).cast(kind)
            for name, kind in SAMPLE_KEYS]
    return labelled.select(
        *keys,
        *[F.col(name).cast(kind).alias(name) for name, kind in feature_columns(features)],
        F.col("click_ts").isNotNull().cast("int").alias("click"),
        F.col("click_ts"),
        F.col("conversion_value").isNotNull().cast("int").alias("conversion"),
        F.coalesce(F.col("conversion_value"), F.lit(0.0)).alias("conversion_value"),
        is_final.alias("labels_final"),
        F.lit(run_id).alias("run_id"),
        F.col("dt"),
    )


def quarantine_rows(classified: DataFrame, source: str, run_id: str) -> DataFrame:
    """Owned quarantined records of one source in the quarantine table's layout."""
    return classified.where(F.col("owned") & (F.col(STATUS) == QUARANTINED)).select(
        F.lit(source).alias("source"), F.col(QUARANTINE_REASON).alias("reason"), "raw",
        F.lit(run_id).alias("run_id"), "dt")


PASSED_CHECKS = "passed_checks"
OUTCOME = ("source", "dt", STATUS, QUARANTINE_REASON, IS_LATE, PASSED_CHECKS)


def outcome_counts(classified: Mapping[str, DataFrame], features: Sequence[str]) -> DataFrame:
    """The owned records of every source counted by outcome: one small aggregate, so one Spark
    job yields the run's counts, its quarantine reasons and its exposures' feature presence.

    Args:
        classified: classified records per source (``classify_exposures``, ``classify_children``).
        features: the declared feature columns of the exposures.

    Returns:
        One row per ``OUTCOME`` (source, dt, status, quarantine_reason, is_late, passed_checks)
        with ``n`` records and, per feature, how many of them carry it (0 for clicks and
        conversions).
    """
    def per_source(source: str, df: DataFrame) -> DataFrame:
        is_late = F.col(IS_LATE) if IS_LATE in df.columns else F.lit(False)
        carried = [F.count(F.col(name)) if source == "exposures" else F.lit(0).cast("long") for name in features]
        return (df.where(F.col("owned"))
                .groupBy(F.lit(source).alias("source"), F.col("dt"), F.col(STATUS), F.col(QUARANTINE_REASON),
                         F.coalesce(is_late, F.lit(False)).alias(IS_LATE), F.col(REASON).isNull().alias(PASSED_CHECKS))
                .agg(F.count(F.lit(1)).alias("n"), *[c.alias(name) for c, name in zip(carried, features)]))

    return reduce(lambda a, b: a.unionByName(b), [per_source(s, df) for s, df in classified.items()])


def date_counts(outcomes: Iterable[Row]) -> dict[str, dict[dt.date, dict[str, int]]]:
    """Counts over the owned records, per source and raw event date: read, accepted,
    duplicates, quarantined, late, out_of_range (a source's totals are their sums)."""
    bucket = {ACCEPTED: "accepted", DUPLICATE: "duplicates", QUARANTINED: "quarantined", OUT_OF_RANGE: "out_of_range"}
    counts: dict[str, dict[dt.date, dict[str, int]]] = {}
    for row in outcomes:
        day = counts.setdefault(row["source"], {}).setdefault(row["dt"], dict.fromkeys(COUNTS, 0))
        day["read"] += row["n"]
        day[bucket[row[STATUS]]] += row["n"]
        day["late"] += row["n"] if row[IS_LATE] else 0
    return counts


def reason_counts(outcomes: Iterable[Row]) -> dict[str, int]:
    """Quarantined records per reason code, all sources together."""
    reasons: dict[str, int] = {}
    for row in outcomes:
        if row[STATUS] == QUARANTINED:
            reasons[row[QUARANTINE_REASON]] = reasons.get(row[QUARANTINE_REASON], 0) + row["n"]
    return reasons


def feature_presence(outcomes: Iterable[Row], features: Sequence[str]) -> dict[dt.date, dict[str, int]]:
    """Per raw event date: the exposures that passed the record checks (``_rows``) and how many
    of them carry each feature."""
    presence: dict[dt.date, dict[str, int]] = {}
    for row in outcomes:
        if row["source"] == "exposures" and row[PASSED_CHECKS]:
            day = presence.setdefault(row["dt"], dict.fromkeys(("_rows", *features), 0))
            day["_rows"] += row["n"]
            for name in features:
                day[name] += row[name]
    return presence


def total_counts(by_date: dict[dt.date, dict[str, int]]) -> dict[str, int]:
    """A source's counts over all its dates."""
    return {name: sum(row[name] for row in by_date.values()) for name in COUNTS}
