"""Reading fused scores back from the ``scores`` Delta table."""
from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io import delta

SHOWN = ("dt", "user_id", "item_id", "p_ctr", "p_cvr", "p_ctcvr", "score", "fusion", "model_id")


def top_scores(spark: SparkSession, cfg: Config, date: dt.date, k: int = 10) -> pd.DataFrame:
    """The ``k`` highest fused scores of ``date``, read back from the ``scores`` table.

    Raises:
        PipelineError: when the table or the date's partition is missing.
    """
    path = cfg.table_path("scores")
    if not delta.is_table(spark, path):
        raise PipelineError(f"no scores table at {path}; run pipeline score first")
    day = delta.read_table(spark, path).where(F.col("dt") == F.lit(date))
    rows = day.orderBy(F.col("score").desc(), "impression_id").limit(k)
    frame = rows.select(*[c for c in SHOWN if c in day.columns]).toPandas()
    if frame.empty:
        raise PipelineError(f"no scores for {date} in {path}; run pipeline score --date {date}")
    return frame
