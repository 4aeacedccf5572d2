"""``pipeline fusion-weights --date D``: the dynamic strategy's per-segment weights.

``segment_weights`` over the ``fusion.dynamic.days`` days ending at ``D - labels.lookback_days``
(the newest day whose labels are final on the night of D; rows with ``labels_final`` only), from
``scores`` joined to ``samples`` on ``impression_id``. Written to ``fusion_weights`` as its
``dt = D`` partition; scoring D uses the newest computation dated on or before D.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.scoring import fusion
from pipeline.scoring.labelled import labelled_scores
from pipeline.tables import FUSION_WEIGHTS_SCHEMA, SEGMENT_WEIGHTS_SCHEMA


def weights_window(cfg: Config, date: dt.date) -> tuple[dt.date, dt.date]:
    """The labelled days ``fusion-weights --date date`` reads: ``fusion.dynamic.days`` days
    ending at ``date - labels.lookback_days``."""
    last = date - dt.timedelta(days=cfg.labels.lookback_days)
    return last - dt.timedelta(days=cfg.fusion.dynamic.days - 1), last


@dataclass(frozen=True)
class WeightsSummary:
    date: dt.date
    from_date: dt.date
    to_date: dt.date
    segment: str
    exposures: int
    segments: int
    path: str
    version: int
    seconds: float

    def line(self) -> str:
        return (f"fusion-weights {self.date}: {self.segments} {self.segment} segments from {self.exposures:,} "
                f"final scored exposures of {self.from_date}..{self.to_date}; fusion_weights v{self.version} "
                f"at {self.path}; {self.seconds:.1f} s")


def compute_fusion_weights(spark: SparkSession, cfg: Config, date: dt.date) -> WeightsSummary:
    """Computes the dynamic strategy's segment weights as of ``date`` (see the module doc) and
    replaces the ``dt = date`` partition of ``fusion_weights``.

    Raises:
        PipelineError: no segment configured, or no final scored exposures in the window.
    """
    clock = time.perf_counter()
    conf = cfg.fusion
    segment = conf.dynamic.segment
    if not segment:
        raise PipelineError("fusion.dynamic.segment: required to compute fusion weights")
    first, last = weights_window(cfg, date)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    rows = labelled_scores(spark, cfg, days).where(F.col("labels_final"))
    terms = fusion.strategy_terms(conf, "dynamic")
    weights = fusion.segment_weights(fusion.with_terms(rows, conf, terms), segment=segment, gain=conf.gain,
                                     smoothing=conf.dynamic.smoothing)
    collected = weights.collect()  # one row per segment: small
    overall = [row for row in collected if row["segment"] is None]
    if not overall or not overall[0]["exposures"]:
        raise PipelineError(f"no final, scored exposures in {first}..{last} to compute fusion weights from; "
                            f"score those days (pipeline score) once their samples are final")
    out = spark.createDataFrame(
        [(*row, first, last, dt.datetime.now(dt.timezone.utc), date) for row in collected], FUSION_WEIGHTS_SCHEMA)
    path = cfg.table_path("fusion_weights")
    version = delta.replace_partitions(out, path, [date])
    delta.register_table(spark, cfg.storage.database, "fusion_weights", path)
    return WeightsSummary(date=date, from_date=first, to_date=last, segment=segment,
                          exposures=int(overall[0]["exposures"]), segments=len(collected) - 1, path=path,
                          version=version, seconds=time.perf_counter() - clock)


def latest_weights(spark: SparkSession, cfg: Config, date: dt.date) -> tuple[DataFrame, dt.date]:
    """The newest ``fusion_weights`` computation dated on or before ``date``, for this segment.

    Returns:
        ``(SEGMENT_WEIGHTS_SCHEMA rows, the computation's date)``: a small local table, ready to
        broadcast.

    Raises:
        PipelineError: none computed yet, or computed for another segment column.
    """
    path = cfg.table_path("fusion_weights")
    hint = f"run pipeline fusion-weights --date {date} first"
    if not delta.is_table(spark, path):
        raise PipelineError(f"fusion.strategy dynamic: no fusion weights at {path}; {hint}")
    # One row per segment and computation: small enough to read whole in one job.
    rows = (delta.read_table(spark, path).where(F.col("dt") <= F.lit(date))
            .select(*SEGMENT_WEIGHTS_SCHEMA.names, "dt").collect())
    if not rows:
        raise PipelineError(f"fusion.strategy dynamic: no fusion weights computed on or before {date} in {path}; {hint}")
    computed = max(row["dt"] for row in rows)
    segment = cfg.fusion.dynamic.segment
    latest = [row for row in rows if row["dt"] == computed]
    if not any(row["segment_column"] == segment for row in latest):
        raise PipelineError(f"fusion.dynamic.segment: the fusion weights of {computed} are not per {segment!r}; {hint}")
    return spark.createDataFrame([tuple(row)[:-1] for row in latest], SEGMENT_WEIGHTS_SCHEMA), computed
