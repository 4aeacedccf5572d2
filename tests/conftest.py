"""Shared fixtures: one real local Spark session with Delta for the whole run."""
from __future__ import annotations

import datetime as dt
import logging
import os

import pytest

os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pyspark.testing imports pandas-on-Spark

from pipeline.config import Config, load_config

TEST_SPARK_SETTINGS = [
    "spark.master=local[2]",
    "spark.conf.spark.ui.enabled=false",
    "spark.conf.spark.sql.shuffle.partitions=2",
]


@pytest.fixture
def pipeline_log(caplog):
    """``caplog`` with the records of the ``pipeline`` loggers, which stop propagating to the root
    logger (caplog's) once a command configured them (``pipeline.console``)."""
    logger = logging.getLogger("pipeline")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def spark_cfg(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp("data")
    return load_config(None, [f"storage.root={root}", *TEST_SPARK_SETTINGS])


# Every other JVM a test starts (a command, spark-submit, a notebook's kernel, an Airflow task)
# lives for seconds: C1-only compilation and the serial collector get it going sooner on two cores
# (measured: the kill and score tests 8% faster, a killed-and-resumed training 60 -> 43 s). The
# session's own JVM runs the whole suite, which C2 makes faster, so it starts without them.
SHORT_LIVED_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@pytest.fixture(scope="session")
def spark(spark_cfg):
    from pipeline.spark import get_spark

    session = get_spark(spark_cfg, app_name="mtrank-tests")
    os.environ["JAVA_TOOL_OPTIONS"] = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {SHORT_LIVED_JVM}".strip()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def score_world_template(spark, tmp_path_factory) -> Config:
    """The world of tests/scoring/test_score.py (``WORLD`` there) generated and backfilled to
    10-05, once: the scoring, registry and kill tests each take a copy (``copy_world``)."""
    from tests.samples.conftest import built_world
    from tests.scoring.test_score import WORLD

    return built_world(spark, tmp_path_factory.mktemp("score_template"), WORLD, "2026-10-01", "2026-10-05")


@pytest.fixture(scope="session")
def night_world_template(spark, tmp_path_factory) -> Config:
    """The world of the nightly tests (tests/test_nightly.py ``WORLD``) generated and backfilled to
    the day before its night, once: the nightly chain and the Airflow DAG's run each take a copy."""
    from tests.samples.conftest import built_world
    from tests.test_nightly import NIGHT, WORLD

    return built_world(spark, tmp_path_factory.mktemp("night_template"), WORLD, "2026-10-01",
                       str(NIGHT - dt.timedelta(days=1)))


@pytest.fixture(scope="session")
def scored_world(spark, score_world_template, tmp_path_factory):
    """The world of tests/scoring/test_score.py (``WORLD`` there) with its samples backfilled to
    10-05, an ESMM model trained on 10-01, and 10-01 and 10-02 scored: ``(cfg, model, rows)``,
    rows the rows scored per date. Session-wide so that tests/test_packaging.py scores it again
    with the packaged environment without training another model."""
    from pipeline.scoring.score import score
    from pipeline.training.train import train_model

    from tests.samples.conftest import copy_world
    from tests.scoring.test_score import WORLD

    d1, d2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)
    cfg = copy_world(score_world_template, tmp_path_factory.mktemp("score"), WORLD)
    model = train_model(spark, cfg, d1, d1, model_name="esmm", progress=False)
    rows = {date: score(spark, cfg, date).rows for date in (d1, d2)}
    return cfg, model, rows
