"""The training set: samples of the training, validation and test days, encoded in Spark and
written to the ``training_set`` Delta table; its pinned snapshot is read back through Petastorm.
A run that asks for what the table's latest version already holds (the same samples version,
days and features: several models trained on one night) reuses that version instead of writing it
again.

Shape notation: N rows, F categorical features, M numeric features.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import __version__
from pipeline.config import Config
from pipeline.confload import to_dict
from pipeline.data import Columns, DataFile, files_of, read_batches, snapshot_files, snapshot_files_by_day
from pipeline.errors import PipelineError
from pipeline.features.encoders import Encoders, encode, fit_encoders
from pipeline.io import delta
from pipeline.models import output_priors
from pipeline.samples.labels import partition_finality, require_final
from pipeline.tables import LABELS

KEYS = ("impression_id", "user_id")
READ_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class Split:
    train: tuple[dt.date, ...]
    validation: tuple[dt.date, ...]
    test: tuple[dt.date, ...]

    @property
    def all(self) -> tuple[dt.date, ...]:
        return self.train + self.validation + self.test

    @property
    def report(self) -> tuple[dt.date, ...]:
        """The days whose metrics are reported: the test days, else the validation days."""
        return self.test or self.validation


@dataclass(frozen=True)
class TrainingSet:
    path: str
    version: int
    split: Split
    encoders: Encoders
    priors: dict[str, float] = field(default_factory=dict)  # initial output biases (``output_priors``)
    reused: bool = False  # the version was written by an earlier run of the same request
    # The snapshot's files of every split day, listed once when the set is built; empty: listed
    # when asked for.
    files_by_day: Mapping[dt.date, tuple[DataFile, ...]] = field(default_factory=dict)

    def files(self, spark: SparkSession, days: Iterable[dt.date]) -> list[DataFile]:
        """The snapshot's files of ``days`` (``pipeline.data.snapshot_files``)."""
        days = tuple(days)
        if all(day in self.files_by_day for day in days):
            return files_of(self.files_by_day, days)
        return snapshot_files(spark, self.path, self.version, days)


def split_dates(start: dt.date, end: dt.date, validation_days: int, test_days: int) -> Split:
    """Training ``start..end``, then ``validation_days``, then ``test_days`` days."""
    def days(first: dt.date, count: int) -> tuple[dt.date, ...]:
        return tuple(first + dt.timedelta(days=i) for i in range(count))

    train = days(start, (end - start).days + 1)
    validation = days(end + dt.timedelta(days=1), validation_days)
    return Split(train=train, validation=validation,
                 test=days(validation[-1] + dt.timedelta(days=1), test_days))


def build_training_set(spark: SparkSession, cfg: Config, split: Split) -> TrainingSet:
    """Fits the encoders on the training days and writes every split day, encoded, to the
    ``training_set`` table, unless its latest version holds them already (``request_tag``);
    returns the version to read (the one the model records).

    Raises:
        PipelineError: when a day has no samples, or (with ``training.final_only``) labels that
            are not final yet.
    """
    samples_path = cfg.table_path("samples")
    samples_version = delta.current_version(spark, samples_path)
    samples = delta.read_table(spark, samples_path, samples_version).where(F.col("dt").isin(list(split.all)))
    check_days(samples, split, cfg.training.final_only)
    train = samples.where(F.col("dt").isin(list(split.train)))
    encoders = fit_encoders(train, cfg.features)
    path = cfg.table_path("training_set")
    tag = request_tag(cfg, (delta.table_id(spark, samples_path), samples_version), split)
    latest = delta.latest_commit(spark, path)
    reused = latest is not None and latest[1] == tag
    if reused:
        version = latest[0]
    else:
        encoded = encode(samples, encoders, keep=(*KEYS, *LABELS, "dt"))
        version = delta.replace_partitions(encoded, path, split.all, user_metadata=tag)
    delta.register_table(spark, cfg.storage.database, "training_set", path)
    return TrainingSet(path=path, version=version, split=split, encoders=encoders, priors=label_priors(train),
                       files_by_day=snapshot_files_by_day(spark, path, version, split.all), reused=reused)


def request_tag(cfg: Config, samples: tuple[str, int], split: Split) -> str:
    """What decides a training set's rows, as the text its commit keeps: the samples table (its
    Delta id) and version, the split's days, the features and the code's version (its encoding)."""
    request = {"samples": samples, "train": split.train, "days": split.all,
               "features": to_dict(cfg.features), "version": __version__}
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"training set {digest}"


def label_priors(samples: DataFrame) -> dict[str, float]:
    """The models' initial output biases from the label rates of ``samples`` (one aggregate)."""
    row = samples.agg(F.mean("click").alias("click"), F.mean("conversion").alias("conversion"),
                      F.mean(F.when(F.col("conversion") == 1, F.log1p("conversion_value"))).alias("log_value")).first()
    return output_priors(row["click"] or 0.0, row["conversion"] or 0.0, row["log_value"] or 0.0)


def check_days(samples: DataFrame, split: Split, final_only: bool) -> dict[dt.date, int]:
    """The rows of each day of ``split`` in ``samples`` (one aggregate).

    Raises:
        PipelineError: a day has no samples, or (``final_only``) labels that are not final yet.
    """
    finality = partition_finality(samples)
    if not final_only:  # any labels will do
        finality = {day: (rows, True) for day, (rows, _) in finality.items()}
    return {day: require_final(finality, day, missing=" (needed for training, validation or test); "
                                                       "run build-samples for it first",
                               not_final="wait for later nights or --set training.final_only=false")
            for day in split.all}


def load_arrays(spark: SparkSession, training_set: TrainingSet, days: tuple[dt.date, ...]) -> dict[str, np.ndarray]:
    """Rows of ``days`` at the pinned version, read by Petastorm from that snapshot's files and
    ordered by ``impression_id`` (deterministic).

    Returns:
        ``cat`` [N, F] int64, ``num`` [N, M] float32, the labels [N] float32, and the keys [N].
    """
    files = training_set.files(spark, days)
    columns = Columns.for_encoders(training_set.encoders, LABELS, keys=KEYS)
    parts = list(read_batches(files, columns=columns, batch_size=READ_BATCH_ROWS))
    if not parts:
        raise PipelineError(f"no rows for {', '.join(map(str, days))} in {training_set.path} "
                            f"version {training_set.version}")
    arrays = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
    order = np.argsort(arrays["impression_id"], kind="stable")
    return {name: values[order] for name, values in arrays.items()}


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model inputs and labels as tensors (keys stay behind)."""
    return {name: torch.from_numpy(arrays[name]) for name in ("cat", "num", *LABELS)}


def batches(tensors: dict[str, torch.Tensor], batch_size: int, *, shuffle: bool, seed: int = 0,
            epoch: int = 0):
    """Yields dicts of [B, ...] tensors. The order depends on ``seed`` and ``epoch`` only, so a
    resumed run sees the same batches as an uninterrupted one."""
    n = len(tensors["click"])
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield {name: tensor[index] for name, tensor in tensors.items()}
