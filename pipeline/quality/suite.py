"""Run models on a generated world and score them against its truth.

The world's exposures and their clean labels come straight from the simulation (the truth the
raw-log pipeline is tested to reproduce), so the suite measures models and training defaults,
not the sample build. Features are encoded by the pipeline's own Spark encoders, fitted on the
training days; training is the pipeline's loop over in-memory batches; evaluation is the
pipeline's, with the true probabilities as the oracle.

Shape notation: N rows.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.config import Config, load_config
from pipeline.data.reader import Columns, to_arrays
from pipeline.features.encoders import Encoders, encode, fit_encoders
from pipeline.quality.worlds import World, synth_overrides
from pipeline.synth.events import TS_MS
from pipeline.synth.generate import Simulation
from pipeline.synth.truth import TRUTH_COLUMNS
from pipeline.tables import LABELS
from pipeline.training.dataset import KEYS, batches, label_priors, to_tensors
from pipeline.training.evaluate import evaluate, predict
from pipeline.training.process import model_inputs, train_in_memory

SPLITS = ("train", "validation", "test")
# What a result row reports per task: (metrics key, row prefix).
TASKS = (("ctr", "ctr"), ("ctcvr", "ctcvr"), ("cvr", "cvr_clicked"), ("cvr_entire_space", "cvr_es"))


@dataclass(frozen=True)
class WorldData:
    """A world's encoded rows per split and the truth of its test day."""

    arrays: dict[str, dict[str, np.ndarray]]  # split -> cat, num, labels, keys [N]
    encoders: Encoders
    priors: dict[str, float]
    truth: pd.DataFrame                        # test day, indexed by impression_id


def world_config(world: World, seed: int, overrides: Sequence[str] = ()) -> Config:
    """The conf that generates ``world`` with ``seed``, then ``overrides`` (model, training)."""
    return load_config(None, [*synth_overrides(world, seed), *overrides])


def simulate_samples(cfg: Config) -> pd.DataFrame:
    """Every generated day's exposures with their labels and true probabilities, and ``dt``."""
    frames = []
    for day, events, _ in Simulation(cfg):
        truth = events.truth[[*TRUTH_COLUMNS, *LABELS]]
        frames.append(events.exposures.drop(columns=[TS_MS]).merge(truth, on="impression_id").assign(dt=day))
    return pd.concat(frames, ignore_index=True)


def prepare_world(spark: SparkSession, cfg: Config, workdir: str) -> WorldData:
    """Simulates the world of ``cfg.synth`` and encodes it with encoders fitted on its training days.

    Args:
        spark: the session the encoders run in.
        cfg: a conf from ``world_config``; the last generated day is the test day, the one
            before it the validation day.
        workdir: a folder for the rows handed to Spark and back.
    """
    samples = simulate_samples(cfg)
    days = sorted(samples["dt"].unique())
    split_days = {"train": days[:-2], "validation": [days[-2]], "test": [days[-1]]}
    source = os.path.join(workdir, "samples.parquet")
    samples.drop(columns=[c for c in TRUTH_COLUMNS if c != "impression_id"]).assign(
        dt=samples["dt"].astype(str)).to_parquet(source, index=False)
    rows = spark.read.parquet(source).withColumn("dt", F.to_date("dt"))
    train = rows.where(F.col("dt").isin(split_days["train"]))
    encoders = fit_encoders(train, cfg.features)
    encoded_path = os.path.join(workdir, "encoded.parquet")
    encode(rows, encoders, keep=(*KEYS, *LABELS, "dt")).write.mode("overwrite").parquet(encoded_path)
    encoded = pd.read_parquet(encoded_path)
    encoded["dt"] = pd.to_datetime(encoded["dt"]).dt.date
    arrays = {split: _arrays(encoded[encoded["dt"].isin(split_days[split])], encoders) for split in SPLITS}
    test = samples[samples["dt"].isin(split_days["test"])]
    return WorldData(arrays=arrays, encoders=encoders, priors=label_priors(train),
                     truth=test[TRUTH_COLUMNS].set_index("impression_id"))


def _arrays(frame: pd.DataFrame, encoders: Encoders) -> dict[str, np.ndarray]:
    """The training arrays of ``frame`` (``to_arrays``), ordered by ``impression_id`` as
    ``load_arrays`` returns them."""
    frame = frame.sort_values("impression_id", kind="stable")
    return to_arrays({name: frame[name].to_numpy() for name in frame.columns},
                     Columns.for_encoders(encoders, LABELS, keys=KEYS))


def run_model(cfg: Config, data: WorldData, name: str) -> dict:
    """Trains model ``name`` with ``cfg``'s defaults on the world's training days and scores it
    on the test day; returns the pipeline's metrics plus training facts."""
    started = time.perf_counter()
    spec = dataclasses.replace(cfg.model, name=name)
    tensors = {split: to_tensors(data.arrays[split]) for split in ("train", "validation")}
    model, result = train_in_memory(spec, model_inputs(data.encoders), data.priors, cfg.training,
                                    tensors["train"], tensors["validation"])
    test = data.arrays["test"]
    predictions = predict(model, batches(to_tensors(test), 8192, shuffle=False))
    metrics = evaluate(predictions, test, data.truth)
    return {"metrics": metrics, "best_epoch": result.best_epoch, "seconds": time.perf_counter() - started,
            "samples_per_second": result.samples_per_second}


def result_row(world: str, seed: int, model: str, run: dict) -> dict:
    """One flat row of the suite's table: AUC and oracle AUC per task."""
    row = {"world": world, "seed": seed, "model": model, "best_epoch": run["best_epoch"],
           "seconds": round(run["seconds"], 1)}
    for key, prefix in TASKS:
        got = run["metrics"].get(key, {})
        row[f"{prefix}_auc"] = got.get("auc", np.nan)
        row[f"{prefix}_oracle"] = got.get("oracle_auc", np.nan)
    return row


def run_suite(spark: SparkSession, worlds: Iterable[World], seeds: Sequence[int], models: Sequence[str],
              overrides: Sequence[str] = (), log=print) -> pd.DataFrame:
    """Every model on every world and seed; one row each (``result_row``)."""
    rows = []
    for world in worlds:
        for seed in seeds:
            cfg = world_config(world, seed, overrides)
            with tempfile.TemporaryDirectory(prefix="mtrank-quality-") as workdir:
                data = prepare_world(spark, cfg, workdir)
            for name in models:
                rows.append(result_row(world.name, seed, name, run_model(cfg, data, name)))
                log(_line(rows[-1]))
    return pd.DataFrame(rows)


def _line(row: dict) -> str:
    cells = " ".join(f"{prefix} {row[prefix + '_auc']:.3f}/{row[prefix + '_oracle']:.3f}" for _, prefix in TASKS)
    return (f"{row['world']:<8} seed {row['seed']} {row['model']:<13} {cells} "
            f"best {row['best_epoch']:g} {row['seconds']:.0f}s")

