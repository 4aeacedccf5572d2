"""Shared fixtures: one real local Spark session with Delta for the whole run."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pyspark.testing imports pandas-on-Spark

from pipeline.config import Config, load_config

TEST_SPARK_SETTINGS = [
    "spark.master=local[2]",
    "spark.conf.spark.ui.enabled=false",
    "spark.conf.spark.sql.shuffle.partitions=2",
]


@pytest.fixture(scope="session")
def spark_cfg(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp("data")
    return load_config(None, [f"storage.root={root}", *TEST_SPARK_SETTINGS])


@pytest.fixture(scope="session")
def spark(spark_cfg):
    from pipeline.spark import get_spark

    session = get_spark(spark_cfg, app_name="mtrank-tests")
    yield session
    session.stop()
