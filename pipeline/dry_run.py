"""``--dry-run`` of build-samples, train and score: what the command would read and write.

Each function plans its command exactly as the command does (the same dates, checks and model
resolution, so a dry run fails where the run would fail, with the same one-line error) and stops
before the first write. It reads only what planning needs: partition listings, the ``samples``
partitions' finality and row counts, the registry.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Optional, Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.logs.read import partition_path, present_dates
from pipeline.logs.schema import SOURCES


@dataclass(frozen=True)
class DryRun:
    """A command's plan: what it would do, read and write."""

    command: str
    what: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def text(self) -> str:
        lines = [f"{self.command} --dry-run: {self.what}", "would read:"]
        lines += [f"  {line}" for line in self.reads]
        lines += ["would write:", *[f"  {line}" for line in self.writes], "nothing was written"]
        return "\n".join(lines)


def _span(days: Sequence[dt.date]) -> str:
    return f"{days[0]}..{days[-1]}" if len(days) > 1 else f"{days[0]}" if days else "no day"


def build_samples(spark: SparkSession, cfg: Config, day: Optional[dt.date] = None,
                  start: Optional[dt.date] = None, end: Optional[dt.date] = None) -> DryRun:
    """``build-samples --date D`` (``day``) or ``--start D1 --end D2``; raises the run's input errors."""
    from pipeline.samples import checks
    from pipeline.samples.build import nightly_run_dates
    from pipeline.samples.labels import backfill_dates, is_final

    dates = nightly_run_dates(spark, cfg, day) if day else backfill_dates(start, end, cfg.labels)
    checks.check_partitions(spark, cfg, dates.rebuilt, dates.end)
    final = sum(is_final(d, dates, cfg.labels) for d in dates.rebuilt)
    reads = []
    for source in SOURCES:
        root = cfg.raw_path(source)
        present = sorted(set(dates.read) & present_dates(spark, root, cfg.raw.format))
        where = (f"{partition_path(root, present[0])} .. dt={present[-1]}" if len(present) > 1
                 else partition_path(root, present[0]) if present else root)
        reads.append(f"{source}: {where} ({len(present)} of {len(dates.read)} event dates "
                     f"{_span(dates.read)} present, {cfg.raw.format})")
    owned = f"replace dt {_span(dates.rebuilt)}"
    writes = (f"samples: {cfg.table_path('samples')} ({owned}; {final} of {len(dates.rebuilt)} partitions final)",
              f"quarantine: {cfg.table_path('quarantine')} ({owned})",
              f"runs: {cfg.table_path('runs')} (append one row)")
    mode = "nightly" if day else "backfill"
    return DryRun("build-samples", f"{mode} run rebuilding {_span(dates.rebuilt)}", tuple(reads), writes)


def train(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date, *, model_name: Optional[str],
          num_proc: int, promote: bool) -> DryRun:
    """``train``; raises the run's errors about missing or unfinished samples."""
    from pipeline import tracking
    from pipeline.io import delta
    from pipeline.registry import find_champion
    from pipeline.training.dataset import check_days, split_dates

    spec = dataclasses.replace(cfg.model, name=model_name) if model_name else cfg.model
    split = split_dates(start, end, cfg.training.validation_days, cfg.training.test_days)
    samples_path = cfg.table_path("samples")
    if not delta.is_table(spark, samples_path):
        raise PipelineError(f"no samples table at {samples_path}; run pipeline build-samples first")
    samples = delta.read_table(spark, samples_path).where(F.col("dt").isin(list(split.all)))
    rows = check_days(samples, split, cfg.training.final_only)
    count = {part: sum(rows[d] for d in days) for part, days in
             (("train", split.train), ("validation", split.validation), ("test", split.test))}
    found = tracking.store(cfg)
    champion = find_champion(spark, cfg) if promote else None
    gate = ("no gate (--no-promote): a candidate only" if not promote
            else f"the gate against the champion {champion.model_id}" if champion
            else "no champion yet: promoted if it can score")
    backend = cfg.training.backend if num_proc > 1 else "this process"
    reads = (f"samples: {samples_path} train {_span(split.train)} ({count['train']:,} rows), "
             f"validation {_span(split.validation)} ({count['validation']:,}), "
             f"test {_span(split.test)} ({count['test']:,})"
             f"{', final labels only' if cfg.training.final_only else ''}",)
    writes = (f"training_set: {cfg.table_path('training_set')} (replace dt {_span(split.all)})",
              f"artifact and checkpoints under {cfg.artifacts_path}",
              f"MLflow: a run in experiment {found.experiment} at {found.tracking_uri}, "
              f"a new version of {found.model_name}; {gate}",
              f"models: {cfg.table_path('models')} (append one row)")
    return DryRun("train", f"{spec.name} on {_span(split.train)} with {num_proc} process(es) ({backend})",
                  reads, writes)


def score(spark: SparkSession, cfg: Config, date: dt.date, *, model_id: str) -> DryRun:
    """``score``; raises the run's errors about the model, the input and the fusion's inputs."""
    from pipeline.registry import resolve_model
    from pipeline.scoring.gates import newest_gate
    from pipeline.scoring.score import count_input, read_input
    from pipeline.scoring.weights import latest_weights

    registered = resolve_model(spark, cfg, model_id)
    rows, input_name = read_input(spark, cfg, date)
    count = count_input(rows, input_name, date)
    strategy = cfg.fusion.strategy
    reads = [f"model: {registered.model_id} ({model_id}; {registered.artifact_uri})",
             f"input: {input_name} dt={date} ({count:,} rows)"]
    if strategy == "learned":
        gate_dir, gate_day = newest_gate(cfg, before=date)
        reads.append(f"learned fusion gate of {gate_day}: {gate_dir}")
    if strategy == "dynamic":
        _, computed = latest_weights(spark, cfg, date)
        reads.append(f"dynamic fusion weights computed on {computed}: {cfg.table_path('fusion_weights')}")
    writes = (f"scores: {cfg.table_path('scores')} (replace dt {date}; fusion {strategy})",)
    return DryRun("score", f"{count:,} rows of {date} with {registered.model_id}", tuple(reads), writes)
