"""One training process: the network, its loss weighting and the loop over its shard of the
training set's files (``train_on_rank``), or over tensors in memory (``train_in_memory``).

``pipeline train`` (``pipeline.training.train``) runs ``train_on_rank`` in its own process or in
the processes of ``training.backend``, which unpickle ``RankJob`` and import this module: so it
imports neither MLflow nor the registry (a second less for each process to start).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Optional

import torch

from pipeline import console
from pipeline.config import Config, TrainingConf
from pipeline.confload import to_dict
from pipeline.data import Columns, DataFile, read_batches, shard_batches
from pipeline.features.encoders import Encoders
from pipeline.models import Inputs, ModelSpec, RankingModel, build_model, make_weighting
from pipeline.tables import LABELS
from pipeline.training.artifacts import save_artifact
from pipeline.training.backends import BACKENDS
from pipeline.training.dataset import batches
from pipeline.training.loop import TrainResult, fit
from pipeline.training.ranks import SingleProcess


def model_inputs(encoders: Encoders) -> Inputs:
    """The network's input shape: the encoders' vocabulary sizes and numeric features."""
    return Inputs(cardinalities=encoders.cardinalities, num_numeric=len(encoders.numeric))


def make_model(spec: ModelSpec, inputs: Inputs, priors: dict[str, float], seed: int) -> RankingModel:
    """The network, seeded, with its outputs starting at the training rows' base rates."""
    torch.manual_seed(seed)
    model = build_model(spec, inputs)
    model.start_at(priors)
    return model


def make_model_weighting(model: RankingModel, conf: TrainingConf):
    """The loss weighting of ``training.loss_weighting``; fixed weights are the model's defaults
    overridden by ``training.loss_weights``."""
    fixed = ({**model.loss_weights, **conf.loss_weights}
             if conf.loss_weighting == "fixed" else None)
    return make_weighting(conf.loss_weighting, list(model.loss_names), fixed=fixed)


@dataclass(frozen=True)
class RankJob:
    """What every training process needs (pickled to the Spark tasks)."""

    spec: ModelSpec
    inputs: Inputs
    priors: dict[str, float]
    cfg: Config
    encoders: Encoders
    train_files: tuple[DataFile, ...]
    validation_files: tuple[DataFile, ...]
    num_proc: int
    checkpoint_dir: str
    artifact_dir: str
    stop_after_epoch: Optional[int]
    progress: bool
    fingerprint: str  # of the run, kept in its checkpoint (see ``run_fingerprint``)
    log: console.LogSettings = dataclasses.field(default_factory=console.current_settings)  # the ranks log alike


# Training conf keys that leave the trained weights as they are (a checkpoint resumes with any
# number of processes, under either backend, and after a run that hit its time limit).
NOT_FINGERPRINTED = ("num_proc", "backend", "time_limit_minutes", "stall_seconds", "test_days")


def run_fingerprint(spec: ModelSpec, encoders: Encoders, priors: dict[str, float], conf: TrainingConf,
                    train_files: tuple[DataFile, ...], validation_files: tuple[DataFile, ...]) -> str:
    """A hash of what decides a run's weights besides its dates: the model spec, the training conf
    and the training rows, seen through their encoders, label priors and row counts. (Not the
    training set's Delta version: a run after a night's build-samples writes a new one, also for
    unchanged days.)"""
    training = {k: v for k, v in to_dict(conf).items() if k not in NOT_FINGERPRINTED}
    described = {"model": dataclasses.asdict(spec), "training": training, "encoders": dataclasses.asdict(encoders),
                 "priors": priors, "rows": [sum(f.rows for f in train_files), sum(f.rows for f in validation_files)]}
    return hashlib.sha256(json.dumps(_rounded(described), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rounded(value):
    """``value`` with every float to 9 significant digits: Spark's aggregates may differ in the last
    bits between runs over the same rows."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def train_on_rank(job: RankJob) -> TrainResult:
    """The training loop of one process: its shard of the snapshot's files through Petastorm.

    Runs in this process (one process) or in a process of ``training.backend``. Rank 0 writes the
    artifact (weights, spec, encoders, history, conf) of the best validation epoch.
    """
    ranks = BACKENDS[job.cfg.training.backend].ranks() if job.num_proc > 1 else SingleProcess()
    if job.num_proc > 1:
        console.configure_logging(job.log.level, job.log.format)  # a process of its own
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.num_proc))  # no oversubscribed cores
    conf = job.cfg.training
    network = make_model(job.spec, job.inputs, job.priors, conf.seed)
    columns = Columns.for_encoders(job.encoders, LABELS)
    shard = {"columns": columns, "rank": ranks.rank, "size": ranks.size}
    steps = shard_batches(job.train_files, ranks.size, conf.batch_size)
    result = fit(network, make_model_weighting(network, conf),
                 train=lambda epoch: read_batches(job.train_files, batch_size=conf.batch_size, shuffle=True,
                                                  seed=conf.seed, epoch=epoch, **shard),
                 validation=lambda: read_batches(job.validation_files, batch_size=4 * conf.batch_size, **shard),
                 steps_per_epoch=max(steps), min_steps_per_epoch=min(steps), conf=conf,
                 checkpoint_dir=job.checkpoint_dir, stop_after_epoch=job.stop_after_epoch,
                 progress=job.progress, ranks=ranks, fingerprint=job.fingerprint)
    if ranks.rank == 0 and (job.stop_after_epoch is None or result.epochs_run >= conf.epochs):
        save_artifact(job.artifact_dir, spec=job.spec, inputs=job.inputs, network=network, encoders=job.encoders,
                      metrics={}, history=result.history, cfg=job.cfg)
    return result


def train_in_memory(spec: ModelSpec, inputs: Inputs, priors: dict[str, float], conf: TrainingConf,
                    train: dict[str, torch.Tensor], validation: dict[str, torch.Tensor], *,
                    progress: bool = False, checkpoint_dir: Optional[str] = None, fingerprint: str = "",
                    stop_after_epoch: Optional[int] = None,
                    time_limit_s: Optional[float] = None) -> tuple[RankingModel, TrainResult]:
    """The training loop of one process over tensors already in memory (``to_tensors``): the same
    model, weighting and loop as ``train_on_rank``, without a reader (benchmarks, the quality suite).
    The keyword arguments are ``fit``'s."""
    network = make_model(spec, inputs, priors, conf.seed)
    result = fit(network, make_model_weighting(network, conf),
                 train=lambda epoch: batches(train, conf.batch_size, shuffle=True, seed=conf.seed, epoch=epoch),
                 validation=lambda: batches(validation, 4 * conf.batch_size, shuffle=False),
                 steps_per_epoch=-(-len(train["click"]) // conf.batch_size), conf=conf, progress=progress,
                 checkpoint_dir=checkpoint_dir, fingerprint=fingerprint, stop_after_epoch=stop_after_epoch,
                 time_limit_s=time_limit_s)
    return network, result
