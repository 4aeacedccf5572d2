"""The one place a SparkSession is built: Delta on, settings from the conf, quiet logs.

Run as a plain Python program (``pipeline ...``, tests, notebooks), the session uses the conf's
``spark.master`` and resolves the Delta jars itself: from ``spark.delta_jars`` when given
(offline clusters), else from the project's jar cache, else from Maven (first run only).
Under ``spark-submit`` the JVM already exists: the submitter's master, jars and ``--conf``
settings win, and the conf file only fills in settings the submitter left unset.
"""
from __future__ import annotations

import fcntl
import glob
import os
import sys
from typing import Mapping

from pipeline.config import Config

DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.1"
DELTA_JAR_PREFIXES = ("io.delta_delta-spark_2.13-4.0.1", "io.delta_delta-storage-4.0.1")

# Settings every session needs, whatever the conf says: Delta's SQL extension and catalog, and
# UTC so that a record's event date (dt) is its UTC date on every machine.
LOG4J2_FILE = os.path.join(os.path.dirname(__file__), "log4j2.properties")

REQUIRED_SETTINGS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
}


def cache_dir() -> str:
    """Heavy artifacts outside the repo: ``$MTRANK_CACHE`` or ``~/.cache/mtrank``."""
    return os.environ.get("MTRANK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mtrank")


def ivy_dir() -> str:
    """Spark's Ivy folder in the cache: the Delta jars a local session loads, and the lock a first
    run resolves them under."""
    return os.path.join(cache_dir(), "ivy")


def under_spark_submit() -> bool:
    """True when this Python process was launched by ``spark-submit`` (the JVM came first)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def delta_jar_settings(cfg: Config, ivy_dir: str) -> dict[str, str]:
    """How a locally launched session gets the Delta jars.

    Args:
        cfg: the configuration (``spark.delta_jars`` wins when set).
        ivy_dir: Spark's Ivy folder; its ``jars/`` holds jars resolved on an earlier run.

    Returns:
        ``spark.jars`` with explicit or cached jars, or ``spark.jars.packages`` for a first run.
    """
    if cfg.spark.delta_jars:
        return {"spark.jars": ",".join(cfg.spark.delta_jars)}
    cached = sorted(glob.glob(os.path.join(ivy_dir, "jars", "*.jar")))
    names = [os.path.basename(path) for path in cached]
    if all(any(n.startswith(prefix) for n in names) for prefix in DELTA_JAR_PREFIXES):
        return {"spark.jars": ",".join(cached)}
    return {"spark.jars.packages": DELTA_PACKAGE, "spark.jars.ivy": ivy_dir}


def session_settings(cfg: Config, submitted: Mapping[str, str]) -> dict[str, str]:
    """The settings to put on the builder: conf-file settings the submitter did not choose,
    then the required Delta/UTC settings."""
    chosen = {k: v for k, v in cfg.spark.conf.items() if k not in submitted}
    return {**chosen, **REQUIRED_SETTINGS}


def get_spark(cfg: Config, app_name: str | None = None):
    """Builds (or returns the active) SparkSession for ``cfg``.

    Args:
        cfg: the configuration.
        app_name: the application name shown in the Spark UI (default ``spark.app_name``).

    Returns:
        A ``pyspark.sql.SparkSession`` with Delta enabled.
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name or cfg.spark.app_name)
    if under_spark_submit():
        for key, value in session_settings(cfg, _submitted_settings()).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    else:
        # Executors' Python workers must run this interpreter (the venv with torch, horovod).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if cfg.spark.master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # one machine: stay on loopback
        builder = builder.master(cfg.spark.master)
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J2_FILE}")
        for key, value in session_settings(cfg, {}).items():
            builder = builder.config(key, value)
        spark = _started_with_delta_jars(cfg, builder)
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    return spark


def _started_with_delta_jars(cfg: Config, builder):
    """``builder``'s session with ``delta_jar_settings`` of the project's jar cache. A first run
    resolves the jars into the cache while it holds the cache's lock; a process starting then
    waits, and finds them cached (Ivy's cache is not safe for two processes resolving at once:
    on a fresh machine one of ``make test``'s two workers failed to start its session)."""
    ivy = ivy_dir()
    os.makedirs(ivy, exist_ok=True)
    with open(os.path.join(ivy, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jars = delta_jar_settings(cfg, ivy)
        for key, value in jars.items():
            builder = builder.config(key, value)
        if "spark.jars.packages" in jars:
            return builder.getOrCreate()
    return builder.getOrCreate()


def session_facts(spark) -> dict[str, str]:
    """What a user checks first about a session: where it runs and whether Delta is on."""
    conf = spark.conf
    return {
        "spark_version": spark.version,
        "master": spark.sparkContext.master,
        "app_name": spark.sparkContext.appName,
        "sql_extensions": conf.get("spark.sql.extensions", ""),
        "session_time_zone": conf.get("spark.sql.session.timeZone"),
        "shuffle_partitions": conf.get("spark.sql.shuffle.partitions"),
        "delta_version": _delta_version(spark),
    }


def _delta_version(spark) -> str:
    """The Delta jar's version (raises if the Delta jars are not on the driver's classpath)."""
    return str(spark.sparkContext._jvm.io.delta.package.VERSION())


def _submitted_settings() -> dict[str, str]:
    """Settings the submitter passed to ``spark-submit`` (read from the running JVM)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to spark-submit's JVM gateway
    return dict(SparkConf().getAll())
