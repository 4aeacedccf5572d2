import fcntl
import os
import subprocess
import sys
import threading

from pipeline.config import load_config
from pipeline.spark import (DELTA_PACKAGE, delta_jar_settings, get_spark, ivy_dir, session_facts,
                            session_settings)
from pipeline.spark_daemon import PRELOADED


def test_session_has_delta_and_utc(spark):
    facts = session_facts(spark)
    assert facts["delta_version"] == "4.0.1"
    assert facts["sql_extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert facts["session_time_zone"] == "UTC"
    assert facts["master"] == "local[2]"
    assert facts["shuffle_partitions"] == "2"  # from the conf


def test_delta_jars_come_from_conf_then_cache_then_maven(tmp_path):
    cfg = load_config(None)
    assert delta_jar_settings(cfg, str(tmp_path)) == {"spark.jars.packages": DELTA_PACKAGE,
                                                      "spark.jars.ivy": str(tmp_path)}
    (tmp_path / "jars").mkdir()
    for name in ("io.delta_delta-spark_2.13-4.0.1.jar", "io.delta_delta-storage-4.0.1.jar", "x.jar"):
        (tmp_path / "jars" / name).write_text("")
    assert delta_jar_settings(cfg, str(tmp_path))["spark.jars"].count(".jar") == 3
    offline = load_config(None, ["spark.delta_jars=[/opt/a.jar, /opt/b.jar]"])
    assert delta_jar_settings(offline, str(tmp_path)) == {"spark.jars": "/opt/a.jar,/opt/b.jar"}


def test_a_session_starts_only_while_no_other_holds_the_jar_cache(spark, spark_cfg):
    """The lock a first run resolves the Delta jars under: a session waits while it is held (here
    by the test, as by another process resolving them), then starts with the cached jars."""
    started = []
    with open(os.path.join(ivy_dir(), ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        starting = threading.Thread(target=lambda: started.append(get_spark(spark_cfg)))
        starting.start()
        starting.join(timeout=2)
        assert starting.is_alive() and not started  # waiting on the lock
    starting.join(timeout=60)
    assert started == [spark]


def test_submitter_settings_win_over_the_conf():
    cfg = load_config(None, ["spark.conf.spark.sql.shuffle.partitions=4", "spark.conf.spark.executor.memory=2g"])
    settings = session_settings(cfg, submitted={"spark.sql.shuffle.partitions": "64"})
    assert "spark.sql.shuffle.partitions" not in settings
    assert settings["spark.executor.memory"] == "2g"
    assert settings["spark.sql.session.timeZone"] == "UTC"


def test_spark_submit_respects_the_submitters_master_and_conf(spark, spark_cfg):
    """A real spark-submit of a job file: --master and --conf beat the conf file."""
    jars = delta_jar_settings(spark_cfg, ivy_dir())
    assert "spark.jars" in jars  # the session fixture resolved and cached the Delta jars
    submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    result = subprocess.run(
        [submit, "--master", "local[1]", "--conf", "spark.sql.shuffle.partitions=7",
         "--jars", jars["spark.jars"], "jobs/spark_info.py", "--conf", "conf/local.yaml"],
        capture_output=True, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert facts["master"] == "local[1]"
    assert facts["shuffle_partitions"] == "7"
    assert facts["delta_version"] == "4.0.1"
    assert facts["session_time_zone"] == "UTC"


def modules_loaded(_) -> list:
    """In a Python worker: whether the heavy libraries were imported before its task, and kept out
    of the garbage collector's passes (``gc.freeze``)."""
    import gc

    return [all(name in sys.modules for name in PRELOADED) and gc.get_freeze_count() > 100_000]


def spawned_with_torch(_) -> list:
    """In a Python worker: whether a process it starts with multiprocessing's "spawn" (as Horovod's
    Spark tasks start theirs), which imports the worker's main module again, has torch imported."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.map(eval, ["'torch' in __import__('sys').modules"])


def test_python_workers_start_with_torch_imported(spark):
    # The local default forks the workers from pipeline/spark_daemon.py, which imported them once.
    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == "pipeline.spark_daemon"
    assert spark.sparkContext.parallelize([0], 1).mapPartitions(modules_loaded).collect() == [True]
    # Only the daemon imports them: a spawned process starts without them (2 s of CPU less each).
    assert spark.sparkContext.parallelize([0], 1).mapPartitions(spawned_with_torch).collect() == [False]
