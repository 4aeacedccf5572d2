"""Fault injection: a job killed with SIGKILL in the middle of its writes, then run again, leaves
exactly the tables of a run that was never interrupted. Nothing lost, nothing duplicated, and
nothing half-written is ever read in between (a Delta table shows only committed versions).

Each scenario starts the job as a ``pipeline`` process, kills it as soon as its first write
begins (a file appears under the table or checkpoint folder), checks what a reader sees, then
runs the same job again in this process.
"""
import datetime as dt
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from pipeline.io import delta
from pipeline.scoring.score import score
from pipeline.training.train import train_model

from tests.conftest import TEST_SPARK_SETTINGS, set_args
from tests.samples.conftest import backfill, copy_world, make_cfg, table, without_run_id
from tests.scoring.test_score import WORLD

pytestmark = pytest.mark.slow

START, END = dt.date(2026, 10, 1), dt.date(2026, 10, 5)


@pytest.fixture(scope="module")
def world(score_world_template, tmp_path_factory):
    """The score tests' tiny world, built without interruption: the reference tables."""
    return copy_world(score_world_template, tmp_path_factory.mktemp("faults"), WORLD)


def sets(cfg, root):
    """``--set`` arguments: the world's settings and raw logs, tables under ``root``."""
    return set_args(*WORLD, f"storage.root={root}", *[f"raw.{s}={cfg.raw_path(s)}" for s in ("exposures", "clicks", "conversions")],
                    *TEST_SPARK_SETTINGS)


def kill_when(args, pattern, timeout=300):
    """Starts ``pipeline ARGS``, SIGKILLs it as soon as a path matches ``pattern``; returns
    whether it was killed before finishing."""
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if glob.glob(pattern, recursive=True):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.02)
    process.kill()
    process.wait()
    return False


def readable(spark, path):
    """What a reader sees now: a committed version of the table, or no table."""
    return delta.read_table(spark, path).count() if delta.is_table(spark, path) else None


def test_build_samples_killed_mid_write(spark, world, tmp_path):
    root = tmp_path / "killed"
    assert kill_when(["build-samples", "--start", str(START), "--end", str(END), *sets(world, root)],
                     str(root / "samples" / "**" / "*.parquet"))
    cfg = make_cfg(root, *WORLD, *[f"raw.{s}={world.raw_path(s)}" for s in ("exposures", "clicks", "conversions")])
    assert readable(spark, cfg.table_path("samples")) in (None, table(spark, world, "samples").count())
    rerun = backfill(spark, cfg, str(START), str(END))
    for name in ("samples", "quarantine"):
        assertDataFrameEqual(without_run_id(table(spark, cfg, name)), without_run_id(table(spark, world, name)))
    counts = rerun.counts["exposures"]
    assert counts["read"] == counts["accepted"] + counts["duplicates"] + counts["quarantined"] + counts["out_of_range"]
    statuses = [r["status"] for r in table(spark, cfg, "runs").collect()]
    assert statuses == ["succeeded"]  # the killed run left no row claiming success


def test_training_killed_after_its_checkpoint_resumes(spark, world):
    day = dt.date(2026, 10, 1)
    args = ["train", "--start", str(day), "--end", str(day), "--model", "esmm", "--set", "training.epochs=3",
            *sets(world, world.storage.root)]
    assert kill_when(args, os.path.join(world.artifacts_path, "_checkpoints", "*", "checkpoint.pt"))
    assert readable(spark, world.table_path("models")) is None  # nothing registered
    cfg = make_cfg(world.storage.root, *WORLD, "training.epochs=3")
    summary = train_model(spark, cfg, day, day, model_name="esmm", progress=False)
    models = table(spark, cfg, "models").collect()
    assert [m["model_id"] for m in models] == [summary.model_id]  # registered once
    assert not glob.glob(os.path.join(cfg.artifacts_path, "_checkpoints", "*", "checkpoint.pt"))


def test_scoring_killed_mid_write(spark, world):
    day = dt.date(2026, 10, 2)
    model_id = table(spark, world, "models").first()["model_id"]  # trained by the test above
    args = ["score", "--date", str(day), "--model-id", model_id, *sets(world, world.storage.root)]
    assert kill_when(args, os.path.join(world.table_path("scores"), "**", "*.parquet"))
    assert readable(spark, world.table_path("scores")) in (None, 0)
    summary = score(spark, world, day, model_id=model_id)
    scores = table(spark, world, "scores").where(F.col("dt") == day)
    samples = table(spark, world, "samples").where(F.col("dt") == day)
    assert summary.rows == scores.count() == samples.count()
    assert scores.select("impression_id").distinct().count() == scores.count()  # nothing duplicated
