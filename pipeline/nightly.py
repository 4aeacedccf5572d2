"""The nightly chain without Airflow: ``pipeline run --date D`` runs what the DAG runs.

    build-samples --date D -> train (when due) -> score D -> report

The steps, the training window and whether training is due come from the night's plan
(pipeline/plan.py), the same one the DAG follows. A step that fails, with an input error
(``PipelineError``) or a run failure (``RunFailure``), stops the chain; the steps after it are
reported as not run.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

from pyspark.sql import SparkSession

from pipeline.config import Config
from pipeline.errors import PipelineError, RunFailure
from pipeline.plan import plan_night

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class StepResult:
    step: str
    status: str  # ok | failed | skipped | not run
    detail: str  # the step's own summary line, the error, or why it was skipped
    seconds: float = 0.0
    error: Optional[type] = None  # failed: PipelineError (input) or RunFailure (the run itself)


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

    def raise_for_failure(self) -> None:
        """Raises the failed step's error class (its exit status) with ``<step> failed: <detail>``."""
        failed = self.failed
        if failed is not None:
            raise (failed.error or PipelineError)(f"{failed.step} failed: {failed.detail}")

    def line(self) -> str:
        states = ", ".join(f"{s.step} {s.status}" for s in self.steps)
        return f"run {self.date}: {'ok' if self.ok else 'FAILED'} ({states}); {sum(s.seconds for s in self.steps):.1f} s"


def run_nightly(spark: SparkSession, cfg: Config, date: dt.date) -> NightlySummary:
    """Runs the chain for ``date``; returns every step's result (it stops at the first failure)."""
    from pipeline.registry import has_champion
    from pipeline.report import build_report
    from pipeline.samples.build import build_nightly
    from pipeline.scoring.score import score
    from pipeline.training.train import train_model

    plan = plan_night(cfg, date, has_champion(lambda: spark, cfg))
    jobs: dict[str, Callable[[], object]] = {  # the steps, in order
        "build-samples": lambda: build_nightly(spark, cfg, plan.build_samples),  # it decides how far back
        "train": lambda: train_model(spark, cfg, plan.train.start, plan.train.end, model_name=plan.train.model),
        "score": lambda: score(spark, cfg, plan.score),
        "report": lambda: build_report(spark, cfg, plan.report),
    }
    results: list[StepResult] = []
    for step, job in jobs.items():
        if any(r.status == "failed" for r in results):
            results.append(StepResult(step, "not run", "an earlier step failed"))
        elif step == "train" and not plan.train.due:
            results.append(StepResult(step, "skipped", plan.train.reason))
        else:
            results.append(_run_step(step, job, note=f" [due: {plan.train.reason}]" if step == "train" else ""))
    return NightlySummary(date=date, steps=tuple(results))


def _run_step(step: str, job: Callable[[], object], note: str = "") -> StepResult:
    """Runs one job; an input error or a run failure is a failed step, anything else a bug."""
    began = time.perf_counter()
    log.info("%s: started", step)
    try:
        detail = job().line() + note
    except (PipelineError, RunFailure) as err:
        kind = RunFailure if isinstance(err, RunFailure) else PipelineError
        log.error("%s: failed: %s", step, err)
        return StepResult(step, "failed", str(err), time.perf_counter() - began, error=kind)
    log.info("%s", detail)
    return StepResult(step, "ok", detail, time.perf_counter() - began)
