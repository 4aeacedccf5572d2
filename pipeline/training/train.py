"""``pipeline train``: encode a date range of ``samples``, train one model, evaluate, register.

Training days ``--start..--end`` (final partitions only, unless ``training.final_only=false``),
then ``training.validation_days`` for early stopping and ``training.test_days`` for the reported
metrics. Spark writes the encoded days to the ``training_set`` table; the trainer pins the
version written and hands Petastorm that snapshot's files. With ``--num-proc N > 1`` the training
loop runs in N processes started as Spark tasks by ``training.backend`` (Horovod's
``horovod.spark.run``, or Spark's TorchDistributor: ``pipeline.training.backends``), each reading
its own shard; with 1 it runs in this process. Rank 0 writes checkpoints and the artifact; this
process evaluates the artifact on the report days, runs the promotion gate against the champion
(``pipeline.registry``), logs the run to MLflow and registers the model there as a new version
(``pipeline.tracking``), and writes the ``models`` registry row.

A run killed midway leaves ``<artifacts>/_checkpoints/<model>-<start>-<end>/``; the same command
resumes from its last epoch, with any number of processes. The checkpoint records a fingerprint
of the run (model, training conf, the training rows' encoders, priors and row counts); a
checkpoint with another fingerprint is ignored and training starts fresh. A training job past
``training.time_limit_minutes`` fails (``RunFailure``), with several processes too (a hung rank
included: see ``run_on_spark``). A checkpoint resumes under either backend.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline import runs, tracking
from pipeline.config import Config
from pipeline.confload import to_dict
from pipeline.errors import PipelineError
from pipeline.features.encoders import encode, encoded_arrays
from pipeline.io import delta
from pipeline.registry import NOT_GATED, gate, register_model
from pipeline.synth.truth import truth_of_days
from pipeline.tables import LABELS
from pipeline.training.artifacts import load_artifact, write_metrics
from pipeline.training.backends import BACKENDS
from pipeline.training.dataset import KEYS, batches, build_training_set, load_arrays, split_dates, to_tensors
from pipeline.training.evaluate import evaluate, predict
from pipeline.training.process import RankJob, model_inputs, run_fingerprint, train_on_rank

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSummary:
    model_id: str
    name: str
    artifact_uri: str
    train_start: dt.date
    train_end: dt.date
    report_days: tuple[dt.date, ...]
    training_set_version: int
    best_epoch: float
    epochs_run: int
    samples_per_second: float
    metrics: dict
    seconds: float
    gate: str = ""  # the promotion gate's decision
    mlflow_uri: str = ""  # models:/<registered model>/<version>

    def line(self) -> str:
        parts = []
        for task in ("ctr", "cvr", "ctcvr", "cvr_entire_space"):
            got = self.metrics.get(task, {})
            if "auc" in got:
                oracle = f" (oracle {got['oracle_auc']:.3f})" if "oracle_auc" in got else ""
                parts.append(f"{task} AUC {got['auc']:.3f}{oracle}")
        return (f"train {self.name} {self.train_start}..{self.train_end}: {self.model_id}, "
                f"training set v{self.training_set_version}, {self.epochs_run} epochs (best {self.best_epoch:g}), "
                f"{self.samples_per_second:,.0f} samples/s; {', '.join(parts)} on {self.report_days[0]}"
                f"{'..' + str(self.report_days[-1]) if len(self.report_days) > 1 else ''}; "
                f"artifact {self.artifact_uri} ({self.mlflow_uri or 'not in MLflow'}); "
                f"{self.gate or 'not registered'}; {self.seconds:.1f} s")


def train_model(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date, *,
                model_name: Optional[str] = None, num_proc: Optional[int] = None, progress: bool = True,
                stop_after_epoch: Optional[int] = None, promote: bool = True) -> TrainSummary:
    """Trains ``model_name`` (default ``model.name``) on ``start..end`` with ``num_proc`` processes
    (default ``training.num_proc``) and registers it; see the module doc. The promotion gate
    (``pipeline.registry.gate``) decides whether it becomes the champion; ``promote=False``
    registers a candidate only (experiments, backfills)."""
    clock = time.perf_counter()
    spec = dataclasses.replace(cfg.model, name=model_name) if model_name else cfg.model
    name = spec.name
    num_proc = num_proc or cfg.training.num_proc
    if num_proc < 1:
        raise PipelineError(f"--num-proc must be >= 1, got {num_proc}")
    if end < start:
        raise PipelineError(f"bad date range: end {end} is before start {start}")
    split = split_dates(start, end, cfg.training.validation_days, cfg.training.test_days)
    log.info("training %s on %s..%s (validation %s, report %s) with %d process(es), backend %s",
             name, start, end, _days(split.validation), _days(split.report), num_proc,
             cfg.training.backend if num_proc > 1 else "none")
    training_set = build_training_set(spark, cfg, split)
    log.info("training set: %s version %d (%s)", training_set.path, training_set.version,
             "reused: the same samples, days and features" if training_set.reused else "written")
    files = {part: tuple(training_set.files(spark, days))
             for part, days in (("train", split.train), ("validation", split.validation))}

    model_id = runs.new_id(name, end)
    checkpoints = os.path.join(cfg.artifacts_path, "_checkpoints", f"{name}-{start:%Y%m%d}-{end:%Y%m%d}")
    job = RankJob(spec=spec, inputs=model_inputs(training_set.encoders), priors=training_set.priors, cfg=cfg,
                  encoders=training_set.encoders,
                  train_files=files["train"], validation_files=files["validation"], num_proc=num_proc,
                  checkpoint_dir=checkpoints, artifact_dir=os.path.join(cfg.artifacts_path, model_id),
                  stop_after_epoch=stop_after_epoch, progress=progress,
                  fingerprint=run_fingerprint(spec, training_set.encoders, training_set.priors, cfg.training,
                                              files["train"], files["validation"]))
    if num_proc == 1:
        result = train_on_rank(job)
    else:
        errors = os.path.join(checkpoints, "_errors")
        shutil.rmtree(errors, ignore_errors=True)
        run = BACKENDS[cfg.training.backend].run
        result = run(train_on_rank, num_proc=num_proc, args=(job,), error_dir=errors,
                     time_limit_s=cfg.training.time_limit_minutes * 60.0, stall_seconds=cfg.training.stall_seconds)[0]
    if stop_after_epoch is not None and result.epochs_run < cfg.training.epochs:
        raise PipelineError(f"stopped after epoch {result.epochs_run} as asked; run again to resume")

    log.info("trained: best epoch %s of %d run, %.0f samples/s; evaluating on %s",
             result.best_epoch, result.epochs_run, result.samples_per_second, _days(split.report))
    loaded = load_artifact(job.artifact_dir)
    report = load_arrays(spark, training_set, split.report)
    predictions = predict(loaded.network, batches(to_tensors(report), 4 * cfg.training.batch_size, shuffle=False))
    metrics = evaluate(predictions, report, truth_of_days(cfg.truth_path, split.report))
    write_metrics(job.artifact_dir, metrics)
    params = {"model": dataclasses.asdict(job.spec), "inputs": dataclasses.asdict(job.inputs),
              "training": to_dict(cfg.training), "num_proc": num_proc,
              "validation_days": [str(d) for d in split.validation], "report_days": [str(d) for d in split.report],
              "best_epoch": result.best_epoch, "samples_per_second": result.samples_per_second}
    headline = _headline(metrics)
    decision = NOT_GATED
    if promote:
        decision = gate(spark, cfg, estimates=loaded.network.estimates, metrics=headline, days=split.report,
                        measure=lambda champion: _headline(evaluate_artifact(spark, cfg, champion.artifact_uri,
                                                                             split.report)))
    logged = tracking.log_training(cfg, model_id=model_id, model_type=name, artifact_dir=job.artifact_dir,
                                   params=params, history=result.history, metrics=headline,
                                   tags={"mtrank.train_start": str(start), "mtrank.train_end": str(end),
                                         "mtrank.training_set_version": str(training_set.version)})
    register_model(spark, cfg, model_id=model_id, name=name, train_start=start, train_end=end,
                   training_set_version=training_set.version, params=params,
                   metrics=headline, artifact_uri=job.artifact_dir, logged=logged, decision=decision)
    shutil.rmtree(checkpoints, ignore_errors=True)  # finished: nothing left to resume
    return TrainSummary(model_id=model_id, name=name, artifact_uri=job.artifact_dir, train_start=start,
                        train_end=end, report_days=split.report, training_set_version=training_set.version,
                        best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                        samples_per_second=result.samples_per_second, metrics=metrics,
                        seconds=time.perf_counter() - clock, gate=decision.line, mlflow_uri=logged.uri)


def evaluate_artifact(spark: SparkSession, cfg: Config, artifact_uri: str, days: tuple[dt.date, ...]) -> dict:
    """The metrics of the model at ``artifact_uri`` on the ``samples`` of ``days``, encoded with its
    own encoders and predicted as ``train_model`` predicts its report days: the gate measures the
    champion on a candidate's report days, the same rows the candidate was measured on."""
    model = load_artifact(artifact_uri)
    samples = delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt").isin(list(days)))
    frame = encode(samples, model.encoders, keep=(*KEYS, *LABELS)).toPandas()
    if frame.empty:
        raise PipelineError(f"no samples for {', '.join(map(str, days))}")
    frame = frame.sort_values("impression_id", kind="stable", ignore_index=True)  # as load_arrays orders them
    cat, num = encoded_arrays(frame, model.encoders)
    arrays = {"cat": cat, "num": num, **{name: frame[name].to_numpy() for name in (*KEYS, *LABELS)}}
    predictions = predict(model.network, batches(to_tensors(arrays), 4 * cfg.training.batch_size, shuffle=False))
    return evaluate(predictions, arrays, truth_of_days(cfg.truth_path, days))


def _days(days: tuple[dt.date, ...]) -> str:
    return f"{days[0]}..{days[-1]}" if days else "none"


def _headline(metrics: dict) -> dict:
    """The registry keeps scalar metrics; reliability bins stay in the artifact."""
    return {task: {k: v for k, v in values.items() if not isinstance(v, list)} for task, values in metrics.items()}
