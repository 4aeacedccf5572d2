"""What the report shows, read from the Delta tables and model artifacts into small pandas frames.

Spark aggregates (runs, quarantine, label rates, score fusion); only per-date or per-model rows,
and one day's scores (thinned to ``MAX_SCORE_ROWS``), reach the driver. Every reader returns
``None`` when its table (or file) does not exist yet.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from typing import Optional

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.logs.schema import SOURCES
from pipeline.scoring import fusion
from pipeline.scoring.conf import FusionConf
from pipeline.tables import COUNTS

TASKS = ("ctr", "cvr", "ctcvr")
METRIC_TASKS = (*TASKS, "cvr_entire_space")
RECOMPUTED = ("linear", "power")  # strategies that are column expressions of the p_* columns alone
MAX_SCORE_ROWS = 200_000


def read_if_table(spark: SparkSession, cfg: Config, name: str) -> Optional[DataFrame]:
    """Table ``name`` of ``cfg``, or ``None`` when it does not exist yet."""
    path = cfg.table_path(name)
    return delta.read_table(spark, path) if delta.is_table(spark, path) else None


# ---------------------------------------------------------------------------------------------
# Spark aggregations (pure transforms)


def run_counts(runs: DataFrame) -> DataFrame:
    """Every job run, oldest first, with its status and per-source counts (null when it failed)."""
    counts = [f"{source}_{count}" for source in SOURCES for count in COUNTS]
    return (runs.select("run_id", "job", "mode", "run_date", "started_at", "status", *counts)
            .orderBy("started_at", "run_id"))


def quarantine_counts(quarantine: DataFrame) -> DataFrame:
    """Quarantined records per raw event date, source and reason."""
    return (quarantine.groupBy("dt", "source", "reason").agg(F.count(F.lit(1)).alias("records"))
            .select("dt", "source", "reason", "records").orderBy("dt", "source", "reason"))


def label_counts(samples: DataFrame) -> DataFrame:
    """Samples, clicks and conversions per exposure date, and whether the date's labels are final."""
    return (samples.groupBy("dt")
            .agg(F.count(F.lit(1)).alias("rows"), F.sum("click").alias("clicks"),
                 F.sum("conversion").alias("conversions"),
                 F.min(F.col("labels_final").cast("int")).alias("final"))
            .select("dt", "rows", "clicks", "conversions", (F.col("final") == 1).alias("final"))
            .orderBy("dt"))


def label_rates(counts: pd.DataFrame) -> pd.DataFrame:
    """``counts`` with CTR (clicks / rows), CVR (conversions / clicks) and CTCVR (conversions / rows)."""
    rows, clicks = counts["rows"].astype(float), counts["clicks"].astype(float)
    return counts.assign(ctr=clicks / rows, cvr=counts["conversions"] / clicks.where(clicks > 0),
                         ctcvr=counts["conversions"] / rows)


def runs_by_source(runs: pd.DataFrame) -> pd.DataFrame:
    """``run_counts`` rows reshaped to one row per run and source, counts as integers."""
    rows = [{"run date": run["run_date"], "job": run["job"], "mode": run["mode"], "source": source,
             **{count: run[f"{source}_{count}"] for count in COUNTS}}
            for _, run in runs.iterrows() for source in SOURCES]
    frame = pd.DataFrame(rows, columns=["run date", "job", "mode", "source", *COUNTS])
    return frame.astype({count: "Int64" for count in COUNTS})


def quarantine_totals(counts: pd.DataFrame) -> pd.DataFrame:
    """``quarantine_counts`` rows summed over dates: records per source and reason, most first."""
    return (counts.groupby(["source", "reason"], as_index=False)["records"].sum()
            .sort_values(["records", "source", "reason"], ascending=[False, True, True], ignore_index=True))


def fused_scores(scores: DataFrame, conf: FusionConf) -> tuple[DataFrame, dict[str, str]]:
    """The stored ``score`` and ``fusion`` of each row, next to the ``RECOMPUTED`` fusions of its
    ``p_*`` columns with the conf's weights (one column per strategy).

    Returns:
        The frame, and strategy -> why it could not be computed (e.g. a value column the scores
        table does not hold).
    """
    columns, skipped = {}, {}
    for strategy in RECOMPUTED:
        try:
            columns[strategy] = fusion.fused_score_column(conf, scores.columns, strategy)
        except PipelineError as err:
            skipped[strategy] = str(err)
    return scores.select("score", "fusion", *[column.alias(name) for name, column in columns.items()]), skipped


# ---------------------------------------------------------------------------------------------
# Readers


def runs_frame(spark: SparkSession, cfg: Config) -> Optional[pd.DataFrame]:
    runs = read_if_table(spark, cfg, "runs")
    return None if runs is None else run_counts(runs).toPandas()


def quarantine_frame(spark: SparkSession, cfg: Config) -> Optional[pd.DataFrame]:
    quarantine = read_if_table(spark, cfg, "quarantine")
    return None if quarantine is None else quarantine_counts(quarantine).toPandas()


def label_frame(spark: SparkSession, cfg: Config) -> Optional[pd.DataFrame]:
    samples = read_if_table(spark, cfg, "samples")
    return None if samples is None else label_rates(label_counts(samples).toPandas())


def models_frame(spark: SparkSession, cfg: Config) -> Optional[pd.DataFrame]:
    """The registry, newest first, with ``params`` and ``metrics`` parsed from JSON."""
    models = read_if_table(spark, cfg, "models")
    if models is None:
        return None
    frame = models.orderBy(F.col("created_at").desc(), F.col("model_id").desc()).toPandas()
    return frame.assign(params=frame["params"].map(json.loads), metrics=frame["metrics"].map(json.loads))


def latest_per_type(models: pd.DataFrame) -> pd.DataFrame:
    """The newest model of each model type (``models`` newest first, as ``models_frame`` gives)."""
    return models.drop_duplicates("model_type", keep="first")


def comparison_table(models: pd.DataFrame) -> pd.DataFrame:
    """One row per registered model: id, type, alias (``champion``), training days, AUC and oracle
    AUC per task.

    Columns no model has a value for (no alias yet, no oracle on real data, no entire-space AUC) are
    left out.
    """
    rows = []
    for model in models.itertuples(index=False):
        row = {"model_id": model.model_id, "type": model.model_type,
               "alias": getattr(model, "alias", None),  # absent from a registry written before aliases
               "train range": f"{model.train_start}..{model.train_end}"}
        for task in METRIC_TASKS:
            got = model.metrics.get(task, {})
            row[f"{task} AUC"] = got.get("auc")
            row[f"{task} oracle AUC"] = got.get("oracle_auc")
        rows.append(row)
    return pd.DataFrame(rows).dropna(axis="columns", how="all")


def artifact_json(artifact_uri: str, name: str) -> Optional[object]:
    """A JSON file of a model artifact (``history.json``, ``metrics.json``), or ``None`` if absent."""
    path = os.path.join(artifact_uri, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def latest_scores(spark: SparkSession, cfg: Config) -> Optional[tuple[dt.date, pd.DataFrame, dict[str, str]]]:
    """The newest scored day: its date, its rows' ``fused_scores`` (at most ``MAX_SCORE_ROWS``,
    a seeded sample beyond), and the strategies that could not be recomputed with why."""
    scores = read_if_table(spark, cfg, "scores")
    day = None if scores is None else scores.agg(F.max("dt")).first()[0]
    if day is None:
        return None
    rows = scores.where(F.col("dt") == F.lit(day))
    total = rows.count()
    if total > MAX_SCORE_ROWS:
        rows = rows.sample(fraction=MAX_SCORE_ROWS / total, seed=7)
    frame, skipped = fused_scores(rows, cfg.fusion)
    return day, frame.toPandas(), skipped
