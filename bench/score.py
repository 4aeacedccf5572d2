"""Scoring throughput: rows/s of ``pipeline score`` in Spark against the same model's in-process
inference on the same rows, and their ratio.

    .venv/bin/python bench/score.py                       # 100k, 1M, 2M and 10M rows
    .venv/bin/python bench/score.py --sizes 20000 100000

Set-up (not timed): a small generated world (2 days of 5,000 exposures), one ESMM epoch trained on
its first day and registered; then for each size a candidates Delta table of that many rows (the
second day's samples repeated with fresh impression ids, in one file per core). Timed, in one warm
local session:

* Spark: ``score`` end to end with ``--set scoring.input=<candidates>``: read, encode, inference in
  ``mapInArrow`` (one torch thread per Python worker), linear fusion, Delta write; with the peak
  resident set and heap of the JVM during the run (the Python workers not included).
* in-process: the same rows (the first 2M of them: the rate does not depend on the count, and
  more would not fit the driver), already encoded and in memory, through the same network in
  batches of ``scoring.batch_size`` (torch's default threads): the inference alone.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time

from build_samples import JvmHeap, PeakMemory
from pyspark.sql import functions as F

from pipeline.config import load_config
from pipeline.features.encoders import encode, encoded_arrays
from pipeline.io import delta
from pipeline.samples.build import build_samples
from pipeline.samples.labels import backfill_dates
from pipeline.scoring.score import score
from pipeline.spark import get_spark
from pipeline.synth.generate import generate
from pipeline.training.artifacts import load_artifact, predict_arrays
from pipeline.training.train import train_model

WORLD = ["synth.days=2", "synth.exposures_per_day=5000", "training.epochs=1", "training.test_days=0",
         "training.final_only=false", "training.num_proc=1"]
SCORE_DATE = dt.date(2026, 10, 10)


def candidates(spark, cfg, rows: int, path: str) -> None:
    """Writes ``rows`` candidates: the second day's samples, repeated, each copy a new impression."""
    day = (delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt") == F.lit(cfg.synth.start_date
                                                                                          + dt.timedelta(days=1)))
           .drop("click", "click_ts", "conversion", "conversion_value", "labels_final", "run_id", "dt"))
    copies = -(-rows // day.count())
    repeated = (day.crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
                .withColumn("impression_id", F.concat_ws("-", "impression_id", F.col("copy").cast("string")))
                .drop("copy").limit(rows).repartition(spark.sparkContext.defaultParallelism))
    repeated.write.format("delta").mode("overwrite").save(path)


IN_PROCESS_ROWS = 2_000_000


def measure(spark, cfg, artifact_uri: str, rows: int, root: str) -> tuple[float, float, float, float]:
    """Seconds of the Spark job over ``rows`` rows, rows/s of in-process inference over (at most
    ``IN_PROCESS_ROWS`` of) the same rows, and the JVM's peak resident set and heap (GB) during
    the Spark job."""
    path = f"{root}/candidates-{rows}"
    candidates(spark, cfg, rows, path)
    jvm, heap = PeakMemory(int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())), JvmHeap(spark)
    jvm.reset()
    heap.reset()
    began = time.perf_counter()
    summary = score(spark, cfg, SCORE_DATE, input_table=path)
    spark_seconds = time.perf_counter() - began
    assert summary.rows == rows, summary
    rss, heap_peak = jvm.peak_bytes() / 1e9, heap.peak_bytes() / 1e9

    model = load_artifact(artifact_uri)
    frame = encode(delta.read_table(spark, path).limit(IN_PROCESS_ROWS), model.encoders).toPandas()
    cat, num = encoded_arrays(frame, model.encoders)
    began = time.perf_counter()
    predict_arrays(model, cat, num, cfg.scoring.batch_size)
    shutil.rmtree(path, ignore_errors=True)
    return spark_seconds, len(frame) / (time.perf_counter() - began), rss, heap_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000, 10_000_000])
    sizes = sorted(parser.parse_args().sizes)
    root = tempfile.mkdtemp(prefix="bench-score-")
    try:
        cfg = load_config(None, [f"storage.root={root}", *WORLD])
        spark = get_spark(cfg, app_name="bench-score")
        generate(cfg, progress=False)
        start = cfg.synth.start_date
        build_samples(spark, cfg, backfill_dates(start, start + dt.timedelta(days=1), cfg.labels), "backfill")
        model = train_model(spark, cfg, start, start, model_name="esmm", progress=False)
        measure(spark, cfg, model.artifact_uri, 10_000, root)  # warm-up: Python workers import torch
        print(f"{'rows':>12} {'spark s':>9} {'spark rows/s':>13} {'in-process rows/s':>18} "
              f"{'ratio':>6} {'JVM RSS GB':>10} {'heap GB':>8}", flush=True)
        for size in sizes:
            spark_seconds, local_rate, rss, heap = measure(spark, cfg, model.artifact_uri, size, root)
            print(f"{size:>12,} {spark_seconds:>9.1f} {size / spark_seconds:>13,.0f} {local_rate:>18,.0f} "
                  f"{size / spark_seconds / local_rate:>6.2f} {rss:>10.2f} {heap:>8.2f}", flush=True)
        print("ratio: Spark rows/s over in-process rows/s (in-process: inference alone, rows already encoded)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
