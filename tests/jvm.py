"""The options of the short-lived JVMs a test starts (a ``pipeline`` command, ``spark-submit``, a
notebook's kernel, an Airflow task), given to them through ``JAVA_TOOL_OPTIONS``.

Each lives for seconds, so it starts with C1-only compilation and the serial collector (measured:
the kill and score tests 8 % faster, a killed-and-resumed training 60 -> 43 s), and with a class
data sharing archive of the classes a Spark job with Delta loads: the JVM maps them instead of
reading, parsing and verifying them from the jars (measured on the kill, CLI and spark-submit
tests: 181 -> 155 s). The session's own JVM runs the whole suite, which C2 makes faster, so it
starts without them.

The archive is made once per set of jars (a ``build-samples`` run on the tiny world that dumps
its classes at exit: about 30 s) and kept in ``$MTRANK_CACHE/cds`` with the two made before it. A
JVM whose class path differs from the one it was made with (``spark-submit``'s launcher, a worker
of another Spark home) cannot use it and starts as without it; its CDS messages are switched off,
so nothing is printed about it.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
from typing import Optional

import pyspark

from pipeline.spark import cache_dir

from tests.conftest import TEST_SPARK_SETTINGS, set_args
from tests.worlds import TINY_WORLD

SHORT_LIVED_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
QUIET_CDS = "-Xlog:cds=off,cds+dynamic=off"
KEPT_ARCHIVES = 3  # about 180 MB each; one per checkout path (its .venv's jars are linked from uv's cache)


def short_lived_jvm_options(ivy_jars: list[str]) -> str:
    """``SHORT_LIVED_JVM`` with the class archive of these jars (made here when missing)."""
    archive = class_archive(ivy_jars)
    return f"{SHORT_LIVED_JVM} -XX:SharedArchiveFile={archive} {QUIET_CDS}" if archive else SHORT_LIVED_JVM


def class_archive(ivy_jars: list[str]) -> Optional[str]:
    """The cached archive for Spark's jars and ``ivy_jars`` (the Delta jars), made on a miss;
    None when it could not be made (the JVMs then start without it). Test processes that miss it
    together (the workers of ``pytest -n``) make it once: the others wait on a lock."""
    path = os.path.join(cache_dir(), "cds", f"spark-{_jars_key(ivy_jars)}.jsa")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path) or _make_class_archive(path):
            return path
    print(f"no class archive made at {path}: the short-lived JVMs start without it", file=sys.stderr)
    return None


def _make_class_archive(path: str) -> bool:
    partial = f"{path}.partial-{os.getpid()}"  # moved into place once complete
    with tempfile.TemporaryDirectory(prefix="cds-") as work:
        if _dump_classes(work, partial):
            os.replace(partial, path)
            _keep_newest(os.path.dirname(path), KEPT_ARCHIVES)
            return True
    if os.path.exists(partial):
        os.remove(partial)
    return False


def _keep_newest(folder: str, count: int) -> None:
    archives = sorted((os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".jsa")),
                      key=os.path.getmtime, reverse=True)
    for old in archives[count:]:
        os.remove(old)
        if os.path.exists(f"{old}.lock"):
            os.remove(f"{old}.lock")


def _jars_key(ivy_jars: list[str]) -> str:
    """What the archive is valid for: the JVM, the options, and every jar (path, size, mtime). Only
    the jars: a folder beside them (``jars/connect-repl``) is not on the class path, and its mtime is
    the install's, where the jars of a ``.venv`` linked from the installer's cache keep theirs."""
    spark_jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
    jars = sorted(os.path.join(spark_jars, name) for name in os.listdir(spark_jars) if name.endswith(".jar"))
    jars += sorted(ivy_jars)
    stats = [(jar, os.stat(jar).st_size, os.stat(jar).st_mtime_ns) for jar in jars]
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return hashlib.sha1(repr((java, SHORT_LIVED_JVM, stats)).encode()).hexdigest()[:12]


def _dump_classes(work: str, archive: str) -> bool:
    """Runs build-samples on a tiny generated world in a JVM that writes ``archive`` at exit."""
    args = set_args(f"storage.root={work}", *TEST_SPARK_SETTINGS, "synth.days=2", *TINY_WORLD)
    env = {**os.environ, "JAVA_TOOL_OPTIONS": f"{SHORT_LIVED_JVM} -XX:ArchiveClassesAtExit={archive} {QUIET_CDS}"}
    for command in (["generate", "-q"], ["build-samples", "--start", "2026-10-01", "--end", "2026-10-02", "-q"]):
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", command[0], *args, *command[1:]],
                                env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            return False
    return os.path.exists(archive)
