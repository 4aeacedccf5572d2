"""Helpers for build-samples tests: hand-written raw logs and one-call runs."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil

from pipeline.config import Config, load_config
from pipeline.io import delta
from pipeline.samples.build import build_nightly, build_samples
from pipeline.samples.labels import backfill_dates

from tests.conftest import TEST_SPARK_SETTINGS


def make_cfg(root, *extra: str) -> Config:
    return load_config("conf/local.yaml", [f"storage.root={root}", *TEST_SPARK_SETTINGS, *extra])


def write_raw(cfg: Config, source: str, day: str, records: list) -> None:
    """Writes JSON lines (dicts are serialized; strings are written as they are)."""
    folder = os.path.join(cfg.raw_path(source), f"dt={day}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "part-00000.jsonl"), "a", encoding="utf-8") as fh:
        for record in records:
            fh.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def built_world(spark, root, settings, start: str, end: str) -> Config:
    """A generated world (``settings`` over conf/local.yaml) with its samples backfilled over [start, end]."""
    from pipeline.synth.generate import generate

    cfg = make_cfg(root, *settings)
    generate(cfg, progress=False)
    backfill(spark, cfg, start, end)
    return cfg


def copy_world(source: Config, root, settings) -> Config:
    """A copy of the world at ``source.storage.root`` (raw logs, truth, tables) under ``root``,
    with ``settings`` over conf/local.yaml: every path of a world is under its root, and a Delta
    table's files are relative to its folder, so the copy is a world of its own."""
    shutil.copytree(source.storage.root, root, dirs_exist_ok=True)
    return make_cfg(root, *settings)


def backfill(spark, cfg: Config, start: str, end: str):
    dates = backfill_dates(dt.date.fromisoformat(start), dt.date.fromisoformat(end), cfg.labels)
    return build_samples(spark, cfg, dates, "backfill")


def nightly(spark, cfg: Config, day: str):
    return build_nightly(spark, cfg, dt.date.fromisoformat(day))


def table(spark, cfg: Config, name: str, version=None):
    return delta.read_table(spark, cfg.table_path(name), version)


def without_run_id(df):
    return df.drop("run_id")
