"""Reader throughput: training rows/s through Petastorm (one rank) next to iterating the same
rows as in-memory tensors, and the ratio between them.

    .venv/bin/python bench/reader.py                      # 1M rows
    .venv/bin/python bench/reader.py --rows 200000 --batch-size 1024

Writes a synthetic encoded table in the ``training_set`` layout (random ids, labels and the
default conf's 8 categorical and 2 numeric features over 3 days) into a temporary folder (not
timed, deleted afterwards). Then times one shuffled epoch of each, ``--repeats`` times, and
prints the best: the Petastorm reader over the snapshot's files (row-group shuffle plus the
shuffling buffer), and ``pipeline.training.dataset.batches`` over tensors already in memory
(the rows loaded once with ``load_arrays``, not timed). Torch runs ``--torch-threads`` intra-op
threads (default 1): indexing one batch is too small to gain from more, and on a busy machine
their spinning, not the data path, sets the in-memory number.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from typing import Callable, Iterable

import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import load_config
from pipeline.data.reader import DEFAULT_BUFFER_ROWS, Columns, open_batches, snapshot_files
from pipeline.features.encoders import Encoders
from pipeline.io import delta
from pipeline.spark import get_spark
from pipeline.tables import LABELS
from pipeline.training.dataset import Split, TrainingSet, batches, load_arrays, to_tensors

DAYS = tuple(dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(3))


def synthetic_rows(spark: SparkSession, rows: int, encoders: Encoders) -> DataFrame:
    """``rows`` encoded rows in the ``training_set`` layout, spread over ``DAYS``."""
    n = F.col("id")
    cats = [(F.rand(i) * 1000).cast("int").alias(f"cat_{name}") for i, name in enumerate(encoders.categorical)]
    nums = [F.randn(100 + i).cast("float").alias(f"num_{name}") for i, name in enumerate(encoders.numeric)]
    day = F.element_at(F.array(*[F.lit(d) for d in DAYS]), (n % len(DAYS) + 1).cast("int"))
    return spark.range(rows).select(
        F.format_string("i%09d", n).alias("impression_id"),
        F.format_string("u%d", n % 10_000).alias("user_id"),
        (F.rand(7) < 0.1).cast("int").alias("click"),
        (F.rand(8) < 0.01).cast("int").alias("conversion"),
        (F.rand(9) * 50).cast("float").alias("conversion_value"),
        *cats, *nums, day.alias("dt"))


def epoch_rows_per_second(epoch: Callable[[int], Iterable[dict]], repeats: int) -> float:
    """The best rows/s over ``repeats`` epochs of ``epoch(i)`` (every batch consumed)."""
    best = 0.0
    for i in range(repeats):
        began, rows = time.perf_counter(), 0
        for batch in epoch(i):
            rows += len(batch["click"])
        best = max(best, rows / (time.perf_counter() - began))
    return best


def reader_epoch(files, columns: Columns, batch_size: int, workers_count: int):
    def epoch(i: int):
        with open_batches(files, columns=columns, batch_size=batch_size, shuffle=True, seed=0, epoch=i,
                          workers_count=workers_count) as reader:
            yield from reader
    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    cfg = load_config(None)
    features = cfg.features
    encoders = Encoders(categorical=tuple(features.categorical), numeric=tuple(features.numeric),
                        vocabularies={}, hash_buckets={}, numeric_stats={})
    columns = Columns.for_encoders(encoders, LABELS)
    spark = get_spark(cfg, app_name="bench-reader")
    root = tempfile.mkdtemp(prefix="bench-reader-")
    try:
        path = f"{root}/training_set"
        version = delta.replace_partitions(synthetic_rows(spark, args.rows, encoders), path, DAYS)
        files = snapshot_files(spark, path, version, DAYS)
        split = Split(train=DAYS, validation=(), test=())
        tensors = to_tensors(load_arrays(spark, TrainingSet(path, version, split, encoders), DAYS))
        print(f"{args.rows:,} rows in {len(files)} files, batch size {args.batch_size}, "
              f"shuffle buffer {DEFAULT_BUFFER_ROWS:,} rows, {args.torch_threads} torch thread(s)", flush=True)

        results = {}
        for workers in (1, 2):
            results[f"petastorm reader, {workers} worker(s)"] = epoch_rows_per_second(
                reader_epoch(files, columns, args.batch_size, workers), args.repeats)
        memory = epoch_rows_per_second(
            lambda i: batches(tensors, args.batch_size, shuffle=True, seed=0, epoch=i), args.repeats)
        print(f"{'source':<34} {'rows/s':>12} {'/ in-memory':>12}")
        for name, rate in results.items():
            print(f"{name:<34} {rate:>12,.0f} {rate / memory:>12.2f}")
        print(f"{'in-memory tensors (batches)':<34} {memory:>12,.0f} {1.0:>12.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
