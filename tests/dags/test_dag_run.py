"""The DAG run for real: ``dag.test()`` in the Airflow environment, on the tiny world of the nightly tests.

The Variable points the DAG at this checkout and a conf of a fresh world; the Spark connection is
the local master, with the ``spark-submit`` of the project's pyspark. The first night has no model
yet, so the plan makes training due and every task runs: plan, build_samples, train_due, train,
score, report (about 3 minutes on 2 cores; much longer when other jobs share them).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import yaml

from pipeline.config import load_config
from pipeline.confload import to_dict
from pipeline.io import delta
from pipeline.spark import delta_jar_settings, ivy_dir

from tests.dags.test_dag import AIRFLOW_PYTHON, REPO
from tests.samples.conftest import copy_world
from tests.test_nightly import NIGHT, WORLD

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the world, then six tasks, each its own interpreter and JVM

PYSPARK_BIN = os.path.join(os.path.dirname(sys.executable), "..", "lib", "python3.11", "site-packages", "pyspark")


@pytest.fixture(scope="module")
def night(night_world_template, tmp_path_factory) -> dict:
    subprocess.run(["bash", str(REPO / ".ci" / "airflow_env.sh")], check=True, timeout=600)
    root = tmp_path_factory.mktemp("dag_run")
    # The nights before this one, built.
    cfg = copy_world(night_world_template, root, [*WORLD, f"report.path={root}/report.html"])
    conf_path = root / "conf.yaml"
    conf_path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    assert load_config(str(conf_path)) == cfg

    spark_home = os.path.realpath(PYSPARK_BIN)
    variable = {
        "repo": str(REPO), "conf_path": str(conf_path), "retries": 0,
        "packages": None,  # the Delta jars of the project's cache (or resolved once), as its sessions use
        "spark_conf": {"spark.pyspark.python": "{{ repo }}/.venv/bin/python", "spark.driver.memory": "1g",
                       **delta_jar_settings(cfg, ivy_dir())},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYSPARK"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path_factory.mktemp("airflow_home")),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_VAR_MTRANK_NIGHTLY=json.dumps(variable),
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        SPARK_HOME=spark_home,
        PATH=os.pathsep.join([os.path.join(spark_home, "bin"), env["PATH"]]),
    )
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), str(REPO / "tests" / "dags" / "run_dag.py"), str(REPO / "dags"),
         f"{NIGHT}T02:00:00+00:00"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    return {"facts": facts, "cfg": cfg, "log": result.stdout + result.stderr}


def test_every_task_of_the_first_night_succeeds(night):
    facts = night["facts"]
    print("seconds per task:", facts["seconds"])
    assert facts["tasks"] == {task: "success" for task in
                              ("plan", "build_samples", "train_due", "train", "score", "report")}, night["log"][-6000:]
    assert facts["state"] == "success"


def test_the_plan_decided_the_night(night):
    plan = night["facts"]["plan"]
    assert plan["date"] == str(NIGHT)
    assert plan["train"] == {"due": True, "reason": "no champion model yet", "start": "2026-10-02",
                             "end": "2026-10-03", "model": "esmm"}


def test_the_jobs_wrote_the_night(spark, night):
    cfg = night["cfg"]
    models = delta.read_table(spark, cfg.table_path("models")).collect()
    assert [(m["train_start"], m["train_end"]) for m in models] == [(dt.date(2026, 10, 2), dt.date(2026, 10, 3))]
    scores = delta.read_table(spark, cfg.table_path("scores"))
    assert scores.where(scores.dt == NIGHT).count() == 2000
    assert os.path.exists(cfg.report.path)
