"""``pipeline train``: encode a date range of ``samples``, train one model, evaluate, register.

Training days ``--start..--end`` (final partitions only, unless ``training.final_only=false``),
then ``training.validation_days`` for early stopping and ``training.test_days`` for the reported
metrics. A run killed midway leaves ``<artifacts>/_checkpoints/<model>-<start>-<end>/``; the same
command resumes from its last epoch. The finished model gets a directory under
``storage.artifacts`` and a row in the ``models`` registry.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Optional

import pandas as pd
import torch
from pyspark.sql import SparkSession

from pipeline.config import Config, to_dict
from pipeline.errors import PipelineError
from pipeline.features.encoders import Encoders
from pipeline.models import ModelSpec, build_model, loss_names, make_weighting, probabilities, task_losses
from pipeline.training.artifacts import register_model, save_artifact
from pipeline.training.dataset import batches, build_training_set, load_arrays, split_dates, to_tensors
from pipeline.training.evaluate import evaluate, predict
from pipeline.training.loop import Objective, fit

TRUTH_COLUMNS = ["impression_id", "p_ctr", "p_cvr", "p_ctcvr", "would_convert"]


@dataclass(frozen=True)
class TrainSummary:
    model_id: str
    name: str
    artifact_uri: str
    train_start: dt.date
    train_end: dt.date
    report_days: tuple[dt.date, ...]
    training_set_version: int
    best_epoch: int
    epochs_run: int
    samples_per_second: float
    metrics: dict
    seconds: float

    def line(self) -> str:
        parts = []
        for task in ("ctr", "cvr", "ctcvr", "cvr_entire_space"):
            got = self.metrics.get(task, {})
            if "auc" in got:
                oracle = f" (oracle {got['oracle_auc']:.3f})" if "oracle_auc" in got else ""
                parts.append(f"{task} AUC {got['auc']:.3f}{oracle}")
        return (f"train {self.name} {self.train_start}..{self.train_end}: {self.model_id}, "
                f"training set v{self.training_set_version}, {self.epochs_run} epochs (best {self.best_epoch}), "
                f"{self.samples_per_second:,.0f} samples/s; {', '.join(parts)} on {self.report_days[0]}"
                f"{'..' + str(self.report_days[-1]) if len(self.report_days) > 1 else ''}; "
                f"artifact {self.artifact_uri}; {self.seconds:.1f} s")


def model_spec(cfg: Config, encoders: Encoders) -> ModelSpec:
    """The network's spec: the conf's ``model`` section and the encoders' vocabulary sizes."""
    layers = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model) if f.name != "name"}
    return ModelSpec(cardinalities=encoders.cardinalities, num_numeric=len(encoders.numeric), **layers)


def train_model(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date, *,
                model_name: Optional[str] = None, num_proc: int = 1, progress: bool = True,
                stop_after_epoch: Optional[int] = None) -> TrainSummary:
    """Trains ``model_name`` (default ``model.name``) on ``start..end``; see the module doc."""
    clock = time.perf_counter()
    name = model_name or cfg.model.name
    if num_proc != 1:
        raise PipelineError("--num-proc > 1 (Horovod on Spark) is not available yet; use --num-proc 1")
    if end < start:
        raise PipelineError(f"bad date range: end {end} is before start {start}")
    split = split_dates(start, end, cfg.training.validation_days, cfg.training.test_days)
    training_set = build_training_set(spark, cfg, split)
    data = {part: load_arrays(spark, training_set, days) for part, days in
            (("train", split.train), ("validation", split.validation), ("report", split.report))}
    tensors = {part: to_tensors(arrays) for part, arrays in data.items()}

    spec = model_spec(cfg, training_set.encoders)
    conf = cfg.training
    torch.manual_seed(conf.seed)
    network = build_model(name, spec)
    losses = lambda logits, batch: task_losses(name, logits, batch, spec)  # noqa: E731
    weighting = make_weighting(conf.loss_weighting, list(loss_names(name, spec)),
                               fixed={k: float(v) for k, v in conf.loss_weights.items()})
    steps = -(-len(data["train"]["click"]) // conf.batch_size)
    checkpoints = os.path.join(cfg.artifacts_path, "_checkpoints", f"{name}-{start:%Y%m%d}-{end:%Y%m%d}")
    result = fit(network, Objective(losses=losses, weighting=weighting),
                 train=lambda epoch: batches(tensors["train"], conf.batch_size, shuffle=True, seed=conf.seed, epoch=epoch),
                 validation=lambda: batches(tensors["validation"], 4 * conf.batch_size, shuffle=False),
                 steps_per_epoch=steps, conf=conf, checkpoint_dir=checkpoints,
                 stop_after_epoch=stop_after_epoch, progress=progress)
    if stop_after_epoch is not None and result.epochs_run < conf.epochs:
        raise PipelineError(f"stopped after epoch {result.epochs_run} as asked; run again to resume")

    predictions = predict(network, lambda logits: probabilities(name, logits, spec),
                          batches(tensors["report"], 4 * conf.batch_size, shuffle=False))
    metrics = evaluate(predictions, data["report"], _truth(cfg, split.report))
    model_id = f"{name}-{end:%Y%m%d}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    directory = os.path.join(cfg.artifacts_path, model_id)
    save_artifact(directory, name=name, spec=spec, network=network, encoders=training_set.encoders,
                  metrics=metrics, history=result.history, cfg=cfg)
    params = {"model": dataclasses.asdict(spec), "training": to_dict(conf),
              "validation_days": [str(d) for d in split.validation], "report_days": [str(d) for d in split.report],
              "best_epoch": result.best_epoch, "samples_per_second": result.samples_per_second}
    register_model(spark, cfg, model_id=model_id, name=name, train_start=start, train_end=end,
                   training_set_version=training_set.version, params=params,
                   metrics=_headline(metrics), artifact_uri=directory)
    shutil.rmtree(checkpoints, ignore_errors=True)  # finished: nothing left to resume
    return TrainSummary(model_id=model_id, name=name, artifact_uri=directory, train_start=start, train_end=end,
                        report_days=split.report, training_set_version=training_set.version,
                        best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                        samples_per_second=result.samples_per_second, metrics=metrics,
                        seconds=time.perf_counter() - clock)


def _truth(cfg: Config, days: tuple[dt.date, ...]) -> Optional[pd.DataFrame]:
    """The generator's truth for ``days`` when this is generated data, indexed by impression."""
    if not os.path.exists(os.path.join(cfg.truth_path, "_manifest.json")):
        return None
    parts = [pd.read_parquet(os.path.join(cfg.truth_path, f"dt={d}"), columns=TRUTH_COLUMNS)
             for d in days if os.path.isdir(os.path.join(cfg.truth_path, f"dt={d}"))]
    return pd.concat(parts).set_index("impression_id") if parts else None


def _headline(metrics: dict) -> dict:
    """The registry keeps scalar metrics; reliability bins stay in the artifact."""
    return {task: {k: v for k, v in values.items() if not isinstance(v, list)} for task, values in metrics.items()}
