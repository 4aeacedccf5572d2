"""pyproject.toml and the scripts that read it agree, and what `make package` builds runs a job with
``spark-submit --archives dist/mtrank-env.tar.gz#env --py-files dist/mtrank-<version>.zip``.

The dependencies' archive is built once per set of pins (about 8 min here) and cached
(.ci/package.sh), so the package takes seconds once it is; the job then takes about 2 minutes,
most of them Spark copying and unpacking the 3.4 GB archive for the driver and again for the
executor.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pyspark
import pytest
import yaml
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

import pipeline
from pipeline.confload import to_dict
from pipeline.io import delta
from pipeline.spark import LOG4J2_FILE, delta_jar_settings, ivy_dir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def pins() -> dict[str, str]:
    return dict(d.split("==") for d in pyproject()["project"]["dependencies"] if "==" in d)


def test_version_and_package_data_come_from_the_package():
    project = pyproject()
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pipeline.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", pipeline.__version__)
    for name in project["tool"]["setuptools"]["package-data"]["pipeline"]:
        assert (REPO / "pipeline" / name).is_file()
    assert project["project"]["scripts"] == {"pipeline": "pipeline.cli:main"}


def test_bootstrap_builds_the_pinned_horovod_against_the_pinned_torch():
    bootstrap = (REPO / ".ci" / "bootstrap.sh").read_text(encoding="utf-8")
    assert re.search(r"^HOROVOD_VERSION=(\S+)$", bootstrap, re.M).group(1) == pins()["horovod"]
    assert re.search(r"^TORCH_VERSION=(\S+)$", bootstrap, re.M).group(1) == pins()["torch"]
    # The venv is rebuilt when the dependency list changes.
    assert "cat pyproject.toml .ci/bootstrap.sh | sha1sum" in bootstrap
    assert not (REPO / "setup.py").exists()


def test_make_package_builds_then_checks_the_archive():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\npackage: env\n", 1)[1].split("\n\n", 1)[0]
    assert recipe.split("\n") == ["\t@bash .ci/package.sh", "\t@bash .ci/check_package.sh"]


# ---------------------------------------------------------------------------------------------
# What `make package` builds, run by spark-submit


@pytest.fixture(scope="module")
def package() -> dict[str, Path]:
    """.ci/package.sh's output: the code (wheel, zip) and the dependencies' archive."""
    result = subprocess.run(["bash", ".ci/package.sh"], cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    dist = REPO / "dist"
    return {"wheel": dist / f"mtrank-{pipeline.__version__}-py3-none-any.whl",
            "zip": dist / f"mtrank-{pipeline.__version__}.zip", "env": dist / "mtrank-env.tar.gz"}


@pytest.mark.timeout(3600)  # the first build of the dependencies' archive included
def test_package_builds_the_code_and_the_dependencies_apart(package):
    names = zipfile.ZipFile(package["zip"]).namelist()
    assert package["zip"].read_bytes() == package["wheel"].read_bytes()
    assert {"pipeline/__init__.py", "pipeline/cli.py", "pipeline/scoring/score.py",
            "pipeline/log4j2.properties"} <= set(names)
    assert {name.split("/")[0] for name in names} == {"pipeline", f"mtrank-{pipeline.__version__}.dist-info"}
    assert package["env"].stat().st_size > 1e9  # torch and its libraries (.ci/check_package.sh looks inside)


def fast_gzip(folder: Path) -> Path:
    """``folder`` with a ``gzip`` for spark-submit's PATH. Spark unpacks a .tar.gz archive with
    ``gzip -dc ARCHIVE | tar -x`` (Hadoop's FileUtil.unTar), twice here: ISA-L's inflate does the
    ``-dc`` part in 9 s of CPU where GNU gzip takes 31 s (the 3.4 GB archive, on this machine).
    Spark's path is the same; any other use of gzip goes to the system's."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "gzip"
    script.write_text(f"""#!/bin/sh
if [ "$#" -eq 2 ] && [ "$1" = -dc ]; then exec '{sys.executable}' -m isal.igzip -d -c "$2"; fi
exec '{shutil.which("gzip")}' "$@"
""")
    script.chmod(0o755)
    return folder


@pytest.mark.timeout(3600)
def test_spark_submit_runs_score_with_the_archive_and_the_zip(package, spark, spark_cfg, scored_world, tmp_path):
    """jobs/score.py through spark-submit with the archive's python on the executor and the zip's
    pipeline on the driver and the executor; then its scores equal the in-process ones.

    The master is local-cluster, a master and a worker in the driver's JVM and the executor a JVM of
    its own, as on a cluster: in local mode (local[N]) Spark 4.0.1 unpacks the archive into the
    driver's SparkFiles folder but starts the Python workers in the driver's working folder, so
    ./env/bin/python is not found there. A cluster's executor starts in its own folder, where the
    archive is unpacked as ./env; local-cluster's executor does the same.
    """
    cfg, model, _ = scored_world
    date = dt.date(2026, 10, 2)
    conf = tmp_path / "conf.yaml"
    settings = to_dict(cfg)
    # The code reaches the executor by --py-files, after its Python daemon starts: Spark's own
    # daemon, as a cluster's conf has it (pipeline/spark_daemon.py).
    del settings["spark"]["conf"]["spark.python.daemon.module"]
    conf.write_text(yaml.safe_dump(settings))
    scores = cfg.table_path("scores")
    version = delta.current_version(spark, scores)

    # Everything the run writes (the archive twice unpacked, about 12 GB) goes under one folder,
    # removed after it: the worker's folder is $SPARK_HOME/work, so SPARK_HOME is a folder of
    # links to the installed pyspark's; Spark's scratch folders and the JVMs' temporary files.
    run = tmp_path / "spark"
    home = run / "home"
    home.mkdir(parents=True)
    installed = Path(pyspark.__file__).resolve().parent
    for name in ("bin", "jars", "python"):
        (home / name).symlink_to(installed / name)
    (run / "tmp").mkdir()
    java = f"-Djava.io.tmpdir={run / 'tmp'}"
    quiet = f"-Dlog4j2.configurationFile={LOG4J2_FILE}"  # the driver's log: warnings and errors
    # Nothing points the Python processes at the checkout: no PYTHONPATH, cwd outside it.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV")}
    env.update(SPARK_HOME=str(home), SPARK_LOCAL_DIRS=str(run / "local"), SPARK_LOCAL_IP="127.0.0.1",
               PATH=os.pathsep.join([str(fast_gzip(run / "bin")), env["PATH"]]))
    jars = delta_jar_settings(spark_cfg, ivy_dir())["spark.jars"]
    submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    command = [
        submit, "--master", "local-cluster[1,1,1024]",
        "--archives", f"{package['env']}#env", "--py-files", str(package["zip"]),
        "--conf", "spark.pyspark.python=./env/bin/python", "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", f"spark.driver.extraJavaOptions={java} {quiet}", "--conf", f"spark.executor.extraJavaOptions={java}",
        "--conf", "spark.ui.enabled=false", "--jars", jars,
        # The executor fetches the archive straight into its folder, not into a cache first and a
        # copy from there (one executor: the cache saves nothing, and a 3.4 GB copy costs seconds).
        "--conf", "spark.files.useFetchCache=false",
        str(REPO / "tests" / "where_python_runs.py"),
        str(REPO / "jobs" / "score.py"), "--conf", str(conf), "--date", str(date)]
    try:
        result = subprocess.run(command, cwd=run, env=env, capture_output=True, text=True, timeout=2400)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    (tmp_path / "spark-submit.log").write_text(result.stdout + result.stderr)  # kept by pytest's basetemp
    assert result.returncode == 0, "\n".join(
        line for line in result.stderr.splitlines() if not line.startswith("\tat "))[-6000:]

    lines = result.stdout.strip().splitlines()
    where = json.loads(next(line for line in lines if line.startswith("where: "))[len("where: "):])
    in_zip = os.path.join(package["zip"].name, "pipeline", "__init__.py")
    checkout = {str(REPO), os.path.realpath(sysconfig.get_paths()["purelib"])}  # .venv's: the editable install
    # The driver (client mode): .venv's python, pipeline from the zip (spark-submit puts the
    # --py-files on its PYTHONPATH), not from the checkout.
    assert where["driver"]["executable"] == sys.executable
    assert where["driver"]["pipeline"] == os.path.join(package["zip"], "pipeline", "__init__.py")
    assert where["executors"]
    for executor in where["executors"]:
        folder = executor["cwd"]  # the executor's folder in the worker's
        assert folder.startswith(str(home / "work") + os.sep)
        # The archive as Spark unpacked it there, ./env, and the zip Spark fetched there.
        assert executor["executable"] == os.path.join(folder, "env", "bin", "python")
        assert executor["prefix"] == os.path.join(folder, "env")
        assert executor["torch"].startswith(os.path.join(folder, "env", "lib") + os.sep)
        assert executor["pipeline"] == os.path.join(folder, in_zip)
        assert not checkout & {os.path.realpath(os.path.join(folder, p)) for p in executor["sys_path"]}

    # The job: its one line, and the scores of the in-process run again (a new scored_at).
    job = next(line for line in lines if line.startswith(f"score {date}: "))
    assert re.fullmatch(rf"score {date}: [\d,]+ rows of samples scored by {model.model_id}, fusion linear; "
                        rf"scores v{version + 1} at .+", job)
    is_date = F.col("dt") == F.lit(date)
    assertDataFrameEqual(delta.read_table(spark, scores).where(is_date).drop("scored_at"),
                         delta.read_table(spark, scores, version).where(is_date).drop("scored_at"))
