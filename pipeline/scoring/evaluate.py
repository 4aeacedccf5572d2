"""``pipeline fusion-eval --date D``: the fusion strategies compared offline on the final, scored
day D (value-weighted NDCG@K and revenue@K per request), next to the best fixed linear weights."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.scoring import business
from pipeline.scoring.conf import FusionConf
from pipeline.scoring.fusion import check_columns, fused_scores, linear_fusion, listed_terms, term_arrays
from pipeline.scoring.gates import newest_gate
from pipeline.scoring.labelled import day_columns, labelled_day
from pipeline.scoring.learned import LearnedFusion
from pipeline.scoring.weights import latest_weights
from pipeline.tables import LABELS


def offline_comparison(conf: FusionConf, frame: pd.DataFrame, *, weights_table: Optional[pd.DataFrame] = None,
                       learned: Optional[LearnedFusion] = None) -> pd.DataFrame:
    """Per strategy, value-weighted NDCG@K and revenue@K per request on a labelled day.

    Compares linear and power (as configured), dynamic and learned (when given), and
    ``linear_grid_best``: the linear weights over ``fusion.terms`` that rank this very day best,
    an upper bound for any fixed linear fusion.

    Args:
        conf: the fusion section (gain, k, grid steps, strategies' settings).
        frame: the day's exposures: ``request_id``, labels, predictions, segment and context columns.
        weights_table: ``segment_weights`` for dynamic, computed from days before this one.
        learned: a gate trained on a day before this one.

    Returns:
        Columns ``strategy``, ``k``, ``ndcg_at_k`` (value-weighted, see ``business.ndcg_at_k``),
        ``mean_ndcg_at_k`` (the plain mean over requests), ``revenue_at_k`` (per request),
        ``weights`` (the linear weights or power exponents; None for dynamic and learned).
    """
    check_columns({"request_id": "offline_comparison", **{name: "offline_comparison" for name in LABELS}},
                  frame.columns)
    k = conf.evaluation.k
    request_ids = frame["request_id"].to_numpy()
    values = pd.to_numeric(frame["conversion_value"]).to_numpy(np.float64)
    gains = business.gain(*(pd.to_numeric(frame[name]).to_numpy(np.float64) for name in LABELS), conf.gain)
    strategies = {"linear": dict(conf.linear), "power": dict(conf.power)}
    if weights_table is not None:
        strategies["dynamic"] = None
    if learned is not None:
        strategies["learned"] = None
    rows = []
    for strategy, numbers in strategies.items():
        scores = fused_scores(conf, frame, strategy=strategy, weights_table=weights_table, learned=learned)
        rows.append({"strategy": strategy, "k": k, "ndcg_at_k": business.ndcg_at_k(request_ids, scores, gains, k),
                     "mean_ndcg_at_k": business.ndcg_at_k(request_ids, scores, gains, k, per_request=True),
                     "revenue_at_k": business.revenue_at_k(request_ids, scores, values, k), "weights": numbers})
    grid_terms = term_arrays(conf, frame, listed_terms(conf))
    best = business.grid_search_linear(grid_terms, request_ids, gains, values, k=k, steps=conf.evaluation.grid_steps)
    best_scores = linear_fusion(grid_terms, best.weights)
    rows.append({"strategy": "linear_grid_best", "k": k, "ndcg_at_k": best.ndcg,
                 "mean_ndcg_at_k": business.ndcg_at_k(request_ids, best_scores, gains, k, per_request=True),
                 "revenue_at_k": best.revenue, "weights": best.weights})
    return pd.DataFrame(rows, columns=["strategy", "k", "ndcg_at_k", "mean_ndcg_at_k", "revenue_at_k", "weights"])


@dataclass(frozen=True)
class FusionReport:
    date: dt.date
    rows: int
    requests: int
    weights_date: Optional[dt.date]
    gate_date: Optional[dt.date]
    table: pd.DataFrame  # offline_comparison's columns

    def text(self) -> str:
        """A header line, then one row per strategy."""
        compared = [f"dynamic weights of {self.weights_date}" if self.weights_date else "no dynamic weights",
                    f"learned gate of {self.gate_date}" if self.gate_date else "no learned gate"]
        shown = self.table.assign(weights=self.table["weights"].map(_format_numbers))
        body = shown.to_string(index=False, float_format=lambda x: f"{x:.4f}")
        return (f"fusion-eval {self.date}: {self.rows:,} exposures in {self.requests:,} requests; "
                f"{'; '.join(compared)}\n{body}")


def evaluate_fusion(spark: SparkSession, cfg: Config, date: dt.date) -> FusionReport:
    """``offline_comparison`` on the final, scored day ``date``: linear and power as configured,
    dynamic with the newest weights dated on or before ``date``, learned with the newest gate
    trained before ``date`` (each when there is one), and the day's best linear weights."""
    frame = labelled_day(spark, cfg, date, day_columns(cfg.fusion))
    weights_table, weights_date, gate, gate_date = None, None, None, None
    if cfg.fusion.dynamic.segment and delta.is_table(spark, cfg.table_path("fusion_weights")):
        try:
            found, weights_date = latest_weights(spark, cfg, date)
            weights_table = found.toPandas()
        except PipelineError:
            weights_date = None
    try:
        gate_dir, gate_date = newest_gate(cfg, before=date)
        gate = LearnedFusion.load(gate_dir)
    except PipelineError:
        gate_date = None
    table = offline_comparison(cfg.fusion, frame, weights_table=weights_table, learned=gate)
    return FusionReport(date=date, rows=len(frame), requests=int(frame["request_id"].nunique(dropna=False)),
                        weights_date=weights_date, gate_date=gate_date, table=table)


def _format_numbers(numbers: Optional[Mapping[str, float]]) -> str:
    if not numbers:
        return "-"
    return ", ".join(f"{name}={value:.4g}" for name, value in numbers.items())
