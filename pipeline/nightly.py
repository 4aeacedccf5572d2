"""The nightly chain without Airflow: ``pipeline run --date D`` runs what the DAG runs.

    build-samples (D and its lookback days) -> train (when due) -> score D -> report

Train is due on ``nightly.train_weekday`` (of D), every night with ``daily``, whenever
``nightly.force_train`` is set, and on the first night (no model registered yet). It trains
``nightly.model`` (default ``model.name``) on the ``nightly.train_days`` days that end
``label_delay_days`` before D, so that the training, validation and test days all have final
labels. Score uses the newest registered model. A step that fails with an input error stops the
chain; the steps after it are reported as not run.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable, Optional

from pyspark.sql import SparkSession

from pipeline.config import WEEKDAYS, Config
from pipeline.errors import PipelineError
from pipeline.io import delta

@dataclass(frozen=True)
class StepResult:
    step: str
    status: str  # ok | failed | skipped | not run
    detail: str  # the step's own summary line, the error, or why it was skipped
    seconds: float = 0.0


@dataclass(frozen=True)
class NightlySummary:
    date: dt.date
    steps: tuple[StepResult, ...]

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "skipped") for s in self.steps)

    @property
    def failed(self) -> Optional[StepResult]:
        """The step that stopped the chain, if one did."""
        return next((s for s in self.steps if s.status == "failed"), None)

    def table(self) -> str:
        """One row per step: status, seconds and its summary line."""
        rows = [f"{'step':<14} {'status':<8} {'seconds':>8}  detail"]
        rows += [f"{s.step:<14} {s.status:<8} {s.seconds:>8.1f}  {s.detail}" for s in self.steps]
        return "\n".join(rows)

    def line(self) -> str:
        states = ", ".join(f"{s.step} {s.status}" for s in self.steps)
        return f"run {self.date}: {'ok' if self.ok else 'FAILED'} ({states}); {sum(s.seconds for s in self.steps):.1f} s"


def label_delay_days(cfg: Config) -> int:
    """Days between a night and the last training day: its test and validation days must be final."""
    return cfg.labels.lookback_days + cfg.training.validation_days + cfg.training.test_days


def training_window(cfg: Config, date: dt.date) -> tuple[dt.date, dt.date]:
    """The training days (first, last) of the night ``date``."""
    end = date - dt.timedelta(days=label_delay_days(cfg))
    return end - dt.timedelta(days=cfg.nightly.train_days - 1), end


def train_reason(cfg: Config, date: dt.date, has_model: bool) -> Optional[str]:
    """Why training is due on ``date`` (``None``: not due)."""
    conf = cfg.nightly
    if conf.force_train:
        return "nightly.force_train"
    if conf.train_weekday == "daily":
        return "daily"
    if WEEKDAYS[date.weekday()] == conf.train_weekday:
        return conf.train_weekday
    if not has_model:
        return "no model registered yet"
    return None


def run_nightly(spark: SparkSession, cfg: Config, date: dt.date) -> NightlySummary:
    """Runs the chain for ``date``; returns every step's result (it stops at the first failure)."""
    from pipeline.report import build_report
    from pipeline.samples.build import build_samples
    from pipeline.samples.labels import nightly_dates
    from pipeline.scoring.score import score
    from pipeline.training.train import train_model

    reason = train_reason(cfg, date, delta.is_table(spark, cfg.table_path("models")))
    start, end = training_window(cfg, date)
    jobs: dict[str, Callable[[], object]] = {  # the steps, in order
        "build-samples": lambda: build_samples(spark, cfg, nightly_dates(date, cfg.labels), "nightly"),
        "train": lambda: train_model(spark, cfg, start, end, model_name=cfg.nightly.model or cfg.model.name),
        "score": lambda: score(spark, cfg, date),
        "report": lambda: build_report(spark, cfg),
    }
    results: list[StepResult] = []
    for step, job in jobs.items():
        if any(r.status == "failed" for r in results):
            results.append(StepResult(step, "not run", "an earlier step failed"))
        elif step == "train" and reason is None:
            results.append(StepResult(step, "skipped", f"not due: trains on {cfg.nightly.train_weekday}s "
                                                       f"(or --set nightly.force_train=true)"))
        else:
            results.append(_run_step(step, job, note=f" [due: {reason}]" if step == "train" else ""))
    return NightlySummary(date=date, steps=tuple(results))


def _run_step(step: str, job: Callable[[], object], note: str = "") -> StepResult:
    """Runs one job; an input error (``PipelineError``) is a failed step, anything else a bug."""
    began = time.perf_counter()
    try:
        detail = job().line() + note
        status = "ok"
    except PipelineError as err:
        detail, status = str(err), "failed"
    return StepResult(step, status, detail, time.perf_counter() - began)
