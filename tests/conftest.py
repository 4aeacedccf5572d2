"""Shared fixtures: one real local Spark session with Delta for the whole run."""
from __future__ import annotations

import collections
import datetime as dt
import logging
import os

import pytest

os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pyspark.testing imports pandas-on-Spark
# One intra-op thread for torch in every test process and the processes they start (read when
# torch is first imported): ``make test``'s two workers share two cores with their Spark JVMs, and
# a process training with two threads there took about 3 times the CPU and the wall time of one
# thread for the same steps of a small network (OpenMP threads spinning on a busy core).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pipeline.config import Config, load_config
from pipeline.spark import LOG4J2_FILE

# The Spark settings of every session the tests start, in this process or in a command's.
# - The serial collector (as in the short-lived JVMs, tests/jvm.py): G1's concurrent threads cost
#   CPU that the suite's two workers and their JVMs share on two cores (build-samples and import
#   tests in one process, two pairs of runs: 360 s and 417 s of CPU with G1, 321 s and 354 s serial).
# - Expressions and operators evaluated by Spark's interpreted code rather than compiled into Java
#   classes (Janino, then the JIT): the tests' queries are many, different and over a few thousand
#   rows, so compiling costs more than it saves (tests/samples/test_build.py in one process: 210 s
#   and 222 s of CPU with code generation, 182 s and 176 s without it, 259 s with whole-stage code
#   generation alone off; the kill tests and the Airflow DAG's run: 371 s against 348 s). Spark's
#   own test suites run both paths; a job on a cluster keeps the default.
# - No adaptive query execution and no Delta file statistics: over a few thousand rows, replanning
#   at every stage saves nothing, and the statistics (min, max, null count of each column of each
#   file, for data skipping, which nothing here reads) are a projection that the interpreted
#   evaluation above makes costly (9 % of the samples of a profile of the session JVM over that module). In
#   tests/samples/test_build.py, one process, two runs each, one after the other: 218 s and 232 s
#   of CPU with the defaults, 192 s and 216 s without adaptive execution, 200 s and 212 s without
#   statistics. A job on a cluster keeps both.
# - C2 inlining less deep and less large than Java 17's defaults (15 levels; 325 bytecodes for a
#   hot method, 35 for any; callers up to 2,500 bytes of code): C2's compiler thread is the largest
#   user of CPU in a session JVM (about 40 % of it), and the suite's queries touch many code paths,
#   each compiled once and run a few thousand times. tests/samples/test_build.py in one process,
#   runs interleaved: 154 s, 163 s, 160 s and 167 s of CPU with the defaults, 135 s and 142 s with
#   these, the wall time the same (100 to 107 s); halfway (9 levels, 150 bytecodes, 1,000 bytes)
#   140 s, 154 s and 161 s; C2's thresholds three times the defaults 170 s and 167 s.
SMALL_INLINING = "-XX:MaxInlineLevel=5 -XX:InlineSmallCode=500 -XX:FreqInlineSize=50 -XX:MaxInlineSize=20"
TEST_SPARK_SETTINGS = [
    "spark.master=local[2]",
    "spark.conf.spark.ui.enabled=false",
    "spark.conf.spark.sql.shuffle.partitions=2",
    f"spark.conf.spark.driver.extraJavaOptions=-Dlog4j2.configurationFile={LOG4J2_FILE} -XX:+UseSerialGC "
    f"{SMALL_INLINING}",
    "spark.conf.spark.sql.codegen.wholeStage=false",
    "spark.conf.spark.sql.codegen.factoryMode=NO_CODEGEN",
    "spark.conf.spark.sql.adaptive.enabled=false",
    "spark.conf.spark.databricks.delta.stats.collect=false",
]
# Spark's defaults again, for a module whose world is large enough for compiled code to pay off
# (tests/training/test_train.py, 360,000 exposures: 275 s of CPU interpreted, 215 s compiled).
COMPILED_SPARK_SETTINGS = ["spark.conf.spark.sql.codegen.wholeStage=true",
                           "spark.conf.spark.sql.codegen.factoryMode=FALLBACK"]


def set_args(*settings: str) -> list[str]:
    """A command's ``--set`` arguments, one per ``KEY=VALUE`` setting."""
    return [f"--set={setting}" for setting in settings]


# The session-wide worlds below, by their fixtures, and the modules that use them.
WORLD_FIXTURES = {"score_world_template": "score_world", "scored_world": "score_world",
                  "night_world_template": "night_world"}
WORLD_USERS = {
    "tests/scoring/test_score.py": "score_world", "tests/test_registry.py": "score_world",
    "tests/faults/test_kill.py": "score_world", "tests/test_packaging.py": "score_world",
    "tests/test_nightly.py": "night_world", "tests/dags/test_dag_run.py": "night_world",
}


def unit_of_work(nodeid: str) -> str:
    """What one worker of ``pytest -n`` runs whole: a test module, or the modules sharing a world,
    so that every fixture is built once and a module's tests run in their order."""
    module = nodeid.split("::")[0]
    return WORLD_USERS.get(module, module)


def pytest_xdist_make_scheduler(config, log):
    """``pytest -n 2`` (make test) hands out ``unit_of_work``s in the collection's order."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    config.option.loadscopereorder = False  # pytest_collection_modifyitems below orders them
    return UnitScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """The units of work with the most ``slow`` tests first, so that no worker of ``pytest -n`` is
    left alone with a long one at the end (a stable sort: the rest keep the collection's order).
    A module that uses a world's fixtures but is not among its ``WORLD_USERS`` is a usage error."""
    units = collections.defaultdict(list)
    for item in items:
        unit = unit_of_work(item.nodeid)
        for world in {WORLD_FIXTURES[name] for name in item.fixturenames if name in WORLD_FIXTURES} - {unit}:
            raise pytest.UsageError(f"{item.nodeid} uses the {world} fixtures: add its module to WORLD_USERS "
                                    f"in tests/conftest.py")
        units[unit].append(item)
    def slow_tests(unit: str) -> int:
        return sum(item.get_closest_marker("slow") is not None for item in units[unit])
    items[:] = [item for unit in sorted(units, key=slow_tests, reverse=True) for item in units[unit]]


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


@pytest.fixture(scope="session")
def spark(spark_cfg):
    from pipeline.spark import delta_jar_settings, get_spark, ivy_dir

    from tests.jvm import short_lived_jvm_options

    session = get_spark(spark_cfg, app_name="mtrank-tests")
    # Every other JVM a test starts lives for seconds (tests/jvm.py); the session's own runs the suite.
    # They start with the cached Delta jars, which the session's start has resolved if they were not
    # (the session itself then lists them as file: URIs).
    jars = delta_jar_settings(spark_cfg, ivy_dir())["spark.jars"]
    options = short_lived_jvm_options(jars.split(","))
    os.environ["JAVA_TOOL_OPTIONS"] = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {options}".strip()
    yield session
    session.stop()


@pytest.fixture(scope="module")
def compiled_queries(spark):
    """The session with ``COMPILED_SPARK_SETTINGS`` for one module, then as it was."""
    settings = dict(s.removeprefix("spark.conf.").split("=", 1) for s in COMPILED_SPARK_SETTINGS)
    before = {key: spark.conf.get(key) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    yield
    for key, value in before.items():
        spark.conf.set(key, value)


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
