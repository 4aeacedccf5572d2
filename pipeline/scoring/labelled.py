"""Scored exposures with their labels: ``scores`` joined to ``samples``, what the fusion
commands (``fusion-weights``, ``fusion-train``, ``fusion-eval``) learn from and judge on."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.samples.labels import partition_finality, require_final
from pipeline.scoring.conf import FusionConf
from pipeline.tables import EXTRA_OUTPUTS, LABELS, PREDICTIONS


def labelled_scores(spark: SparkSession, cfg: Config, days: Sequence[dt.date]) -> DataFrame:
    """``samples`` of ``days`` with the predictions ``scores`` holds for them (inner join on
    ``impression_id`` and ``dt``): every sample column, and ``p_*`` and ``model_id``.

    Raises:
        PipelineError: no scores or no samples table.
    """
    for name, command in (("scores", "pipeline score"), ("samples", "pipeline build-samples")):
        if not delta.is_table(spark, cfg.table_path(name)):
            raise PipelineError(f"no {name} table at {cfg.table_path(name)}; run {command} first")
    wanted = list(days)
    predicted = (delta.read_table(spark, cfg.table_path("scores")).where(F.col("dt").isin(wanted))
                 .where(F.col("impression_id").isNotNull()).alias("s"))
    samples = delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt").isin(wanted)).alias("x")
    is_same_exposure = ((F.col("x.impression_id") == F.col("s.impression_id")) & (F.col("x.dt") == F.col("s.dt")))
    joined = samples.join(predicted, on=is_same_exposure, how="inner")
    return joined.select("x.*", *[F.col(f"s.{name}") for name in (*PREDICTIONS, *EXTRA_OUTPUTS, "model_id")])


def labelled_day(spark: SparkSession, cfg: Config, date: dt.date, columns: Sequence[str]) -> pd.DataFrame:
    """The final, scored exposures of ``date`` with ``columns`` (those that exist), as pandas.

    Raises:
        PipelineError: the day has no samples, labels that are not final yet, or no scores.
    """
    path = cfg.table_path("samples")
    finality = (partition_finality(delta.read_table(spark, path).where(F.col("dt") == F.lit(date)))
                if delta.is_table(spark, path) else {})
    require_final(finality, date, missing="; run pipeline build-samples for it first",
                  not_final="use a day at least labels lookback days old")
    rows = labelled_scores(spark, cfg, [date])
    frame = rows.select(*[name for name in dict.fromkeys(columns) if name in rows.columns]).toPandas()
    if frame.empty:
        raise PipelineError(f"no scores for {date}; run pipeline score --date {date} first")
    return frame


def day_columns(conf: FusionConf) -> list[str]:
    """What training and evaluating fusion read from a labelled day."""
    context = [*conf.learned.categorical, *conf.learned.numeric]
    value = [conf.value_column] if conf.value_source == "column" and conf.value_column else []
    segment = [conf.dynamic.segment] if conf.dynamic.segment else []
    return ["request_id", *LABELS, *PREDICTIONS, *EXTRA_OUTPUTS, "model_id", *value, *segment, *context]
