"""``pipeline report``: one self-contained HTML page about the data, the models and the scores.

Sections, each built from what exists (a table not written yet gives a note naming the command
that writes it): data quality per run (``runs``, ``quarantine``), label rates by date
(``samples``), training loss curves of the newest model of each type, ROC and reliability of the
newest model (its ``metrics.json``), the comparison of every registered model (``models``), and
the score distributions of the newest scored day per fusion strategy (``scores``).
"""
from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from pipeline.config import Config
from pipeline.report import gather, plots
from pipeline.report.html import Section, image, missing, note, paragraph, render, table

TITLE = "mtrank pipeline report"
RUNS_IN_TABLE = 10  # the newest runs listed under the plot (the plot shows every run)


@dataclass(frozen=True)
class ReportSummary:
    path: str
    sections: tuple[str, ...]
    waiting: tuple[str, ...]  # sections that only name the command to run first
    images: int
    size_bytes: int
    seconds: float

    def line(self) -> str:
        waiting = f" ({len(self.waiting)} waiting for data: {', '.join(self.waiting)})" if self.waiting else ""
        return (f"report: {len(self.sections)} sections{waiting}, {self.images} images, "
                f"{self.size_bytes / 1024:,.0f} KiB at {self.path}; {self.seconds:.1f} s")


def build_report(spark: SparkSession, cfg: Config, out_path: Optional[str] = None) -> ReportSummary:
    """Writes the report page and returns what it holds.

    Args:
        spark: the session.
        cfg: the configuration (tables, artifacts, fusion weights, ``report.path``).
        out_path: where to write the page (default ``report.path``); folders are created.
    """
    clock = time.perf_counter()
    path = out_path or cfg.report.path
    models = gather.models_frame(spark, cfg)
    sections = (
        data_quality_section(gather.runs_frame(spark, cfg), gather.quarantine_frame(spark, cfg)),
        label_rates_section(gather.label_frame(spark, cfg)),
        training_section(models),
        roc_section(models),
        comparison_section(models),
        scores_section(gather.latest_scores(spark, cfg), cfg),
    )
    meta = (f"generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from {cfg.storage.root} "
            f"(artifacts {cfg.artifacts_path})")
    page = render(TITLE, meta, sections)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return ReportSummary(path=path, sections=tuple(s.title for s in sections),
                         waiting=tuple(s.title for s in sections if s.waiting),
                         images=page.count('src="data:image/png;base64,'), size_bytes=len(page.encode("utf-8")),
                         seconds=time.perf_counter() - clock)


# ---------------------------------------------------------------------------------------------
# Sections: small frames in, HTML fragments out


def data_quality_section(runs: Optional[pd.DataFrame], quarantine: Optional[pd.DataFrame]) -> Section:
    """Per-source counts of every succeeded run, and quarantine reasons by raw event date."""
    title = "Data quality per run"
    if runs is None and quarantine is None:
        return Section(title, (missing("runs or quarantine", "build-samples"),), waiting=True)
    blocks = []
    succeeded = None if runs is None else runs[runs["status"] == "succeeded"]
    if succeeded is None or succeeded.empty:
        blocks.append(missing("succeeded runs", "build-samples"))
    else:
        failed = len(runs) - len(succeeded)
        blocks += [paragraph(f"Succeeded runs: {len(succeeded)} ({failed} failed), run dates "
                             f"{succeeded['run_date'].min()}..{succeeded['run_date'].max()}. For every source, "
                             f"read = accepted + duplicates + quarantined + out_of_range."),
                   image(plots.run_counts_plot(succeeded), "records per run and source"),
                   paragraph(f"Counts of the newest runs (at most {RUNS_IN_TABLE}):"),
                   table(gather.runs_by_source(succeeded.tail(RUNS_IN_TABLE)))]
    if quarantine is None:
        blocks.append(missing("quarantine table", "build-samples"))
    elif quarantine.empty:
        blocks.append(note("no record was quarantined"))
    else:
        blocks += [image(plots.quarantine_plot(quarantine), "quarantined records by date and reason"),
                   paragraph("Quarantined records over all dates:"), table(gather.quarantine_totals(quarantine))]
    return Section(title, tuple(blocks))


def label_rates_section(rates: Optional[pd.DataFrame]) -> Section:
    """Samples, CTR, CVR and CTCVR per exposure date."""
    title = "Label rates by date"
    if rates is None:
        return Section(title, (missing("samples", "build-samples"),), waiting=True)
    if rates.empty:
        return Section(title, (note("the samples table has no rows"),), waiting=True)
    return Section(title, (
        paragraph("CTR = clicks / samples, CVR = conversions / clicks, CTCVR = conversions / samples; "
                  "final: every label window of the date has closed."),
        image(plots.label_rates_plot(rates), "samples and label rates per date"),
        table(rates[["dt", "rows", "clicks", "conversions", "ctr", "cvr", "ctcvr", "final"]]),
    ))


def training_section(models: Optional[pd.DataFrame]) -> Section:
    """Train and validation loss curves of the newest model of each type."""
    title = "Training"
    if models is None or models.empty:
        return Section(title, (missing("registered models", "train --start D1 --end D2"),), waiting=True)
    histories, blocks = {}, []
    for model in gather.latest_per_type(models).itertuples(index=False):
        history = gather.artifact_json(model.artifact_uri, "history.json")
        if history:
            histories[f"{model.model_type}\n{model.model_id}"] = history
        else:
            blocks.append(note(f"no history.json in the artifact of {model.model_id} ({model.artifact_uri})"))
    if histories:
        blocks[:0] = [paragraph("Loss per epoch of the newest model of each type: train (solid) and validation "
                                "(dashed); the dotted line marks the epoch whose weights were kept."),
                      image(plots.loss_curves_plot(histories), "loss curves")]
    return Section(title, tuple(blocks))


def roc_section(models: Optional[pd.DataFrame]) -> Section:
    """ROC curves and reliability bins per task of the newest model, with its headline metrics."""
    title = "ROC and calibration"
    if models is None or models.empty:
        return Section(title, (missing("registered models", "train --start D1 --end D2"),), waiting=True)
    newest = models.iloc[0]
    metrics = gather.artifact_json(newest["artifact_uri"], "metrics.json")
    if not metrics:
        return Section(title, (note(f"no metrics.json in the artifact of {newest['model_id']}"),))
    tasks = [task for task in plots.TASK_LABELS if task in metrics and "auc" in metrics[task]]
    blocks = [paragraph(f"{newest['model_type']} {newest['model_id']}, on its report days "
                        f"{', '.join(newest['params'].get('report_days', []))}.")]
    if any(metrics[task].get("roc") or metrics[task].get("reliability") for task in tasks):
        blocks.append(image(plots.roc_reliability_plot(metrics), "ROC and reliability per task"))
    without_roc = [task for task in tasks if not metrics[task].get("roc")]
    if without_roc:
        blocks.append(note(f"no ROC points stored for {', '.join(without_roc)} (a model trained before they were)"))
    rows = [{"task": task, **{key: metrics[task].get(key) for key in
                              ("rows", "positives", "auc", "gauc", "logloss", "calibration", "oracle_auc")}}
            for task in tasks]
    blocks.append(table(pd.DataFrame(rows).dropna(axis="columns", how="all")))
    return Section(title, tuple(blocks))


def comparison_section(models: Optional[pd.DataFrame]) -> Section:
    """One row per registered model, newest first."""
    title = "Model comparison"
    if models is None or models.empty:
        return Section(title, (missing("registered models", "train --start D1 --end D2"),), waiting=True)
    return Section(title, (
        paragraph(f"Registered models: {len(models)}, newest first; alias champion: the model score uses by "
                  "default. AUCs on each model's report days: CTR and "
                  "CTCVR over all exposures, CVR over clicked ones; oracle: the generator's true probabilities; "
                  "cvr_entire_space: CVR against would-convert labels over all exposures."),
        table(gather.comparison_table(models)),
    ))


def scores_section(latest: Optional[tuple[dt.date, pd.DataFrame, dict[str, str]]], cfg: Config) -> Section:
    """Histograms of the newest scored day: the stored score, and the linear and power fusions."""
    title = "Score distributions"
    if latest is None:
        return Section(title, (missing("scores", "score --date D"),), waiting=True)
    day, frame, skipped = latest
    if frame.empty:
        return Section(title, (note(f"the scores of {day} have no rows"),))
    stored = str(frame["fusion"].iloc[0])
    panels = {f"{stored} (stored score)": frame["score"].to_numpy(np.float64, na_value=np.nan)}
    for strategy in gather.RECOMPUTED:
        if strategy != stored and strategy in frame:
            panels[f"{strategy} (recomputed)"] = frame[strategy].to_numpy(np.float64, na_value=np.nan)
    weights = "; ".join(f"{strategy} " + ", ".join(f"{term} {number:g}" for term, number in
                                                   getattr(cfg.fusion, strategy).items())
                        for strategy in gather.RECOMPUTED)
    blocks = [paragraph(f"Scores of {day}: {len(frame):,} rows (at most {gather.MAX_SCORE_ROWS:,}, sampled beyond). "
                        f"The stored score used the {stored} fusion; the others are recomputed from the p_* "
                        f"columns with the conf's weights and exponents ({weights})."),
              image(plots.score_histograms_plot(panels, f"Fused scores of {day}"), "score histograms"),
              table(_score_stats(panels))]
    blocks += [note(f"{strategy} not recomputed: {why}") for strategy, why in skipped.items()]
    return Section(title, tuple(blocks))


def _score_stats(panels: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows, mean and quantiles of each strategy's scores."""
    rows = []
    for strategy, values in panels.items():
        finite = values[np.isfinite(values)]
        quantiles = np.quantile(finite, [0.5, 0.9, 0.99]) if len(finite) else [np.nan] * 3
        rows.append({"strategy": strategy, "rows": len(finite), "mean": finite.mean() if len(finite) else np.nan,
                     "p50": quantiles[0], "p90": quantiles[1], "p99": quantiles[2]})
    return pd.DataFrame(rows)
