"""The Airflow DAG (dags/mtrank_nightly.py): loads cleanly, wires the jobs, renders their arguments.

Airflow lives in its own environment (.venv-airflow, made by .ci/airflow_env.sh on first use):
tests/dags/check_dag.py runs there and reports what it sees as JSON; the assertions are here.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"
DS = "2026-10-10"  # a Saturday
VARIABLE = {"schedule": "30 1 * * *", "conn_id": "spark_yarn", "repo": "/srv/mtrank", "retries": 5,
            "conf_path": "/etc/mtrank/prod.yaml", "timeout_hours": {"train": 8}}
PYTHON, PLAN_JOB = "/opt/mtrank/.venv/bin/python", "/opt/mtrank/jobs/plan.py"
# The two layers of `make package`: dist/mtrank-env.tar.gz (the dependencies), dist/mtrank-0.2.0.zip (the code).
ARCHIVE = "hdfs:///apps/mtrank/mtrank-deps-577da18fef5a.tar.gz"
ZIP = "hdfs:///apps/mtrank/mtrank-0.2.0.zip"
# Both (client deploy mode), then with a spark_conf for cluster deploy mode, then the archive alone.
ARCHIVED = {"archive": ARCHIVE, "py_files": ZIP}
ARCHIVED_CLUSTER = {**ARCHIVED, "spark_conf": {"spark.pyspark.driver.python": "./env/bin/python",
                                               "spark.executor.memory": "16g"}}
ARCHIVE_ALONE = {"archive": ARCHIVE}


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> dict:
    subprocess.run(["bash", str(REPO / ".ci" / "airflow_env.sh")], check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow_home"))
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), str(REPO / "tests" / "dags" / "check_dag.py"), str(REPO / "dags"), DS,
         *(json.dumps(v) for v in (VARIABLE, ARCHIVED, ARCHIVED_CLUSTER, ARCHIVE_ALONE))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dag(facts) -> dict:
    return facts["default"]


def test_loads_without_errors_warnings_or_heavy_imports(dag):
    assert dag["import_errors"] == {}
    assert dag["warnings"] == {}
    assert dag["heavy_modules"] == []
    assert dag["dag_ids"] == ["mtrank_nightly"]


def test_tasks_and_order(dag):
    assert {task_id: t["upstream"] for task_id, t in dag["tasks"].items()} == {
        "plan": [],
        "build_samples": ["plan"],
        "train_due": ["build_samples", "plan"],
        "train": ["train_due"],
        "score": ["build_samples", "train"],
        "report": ["score"],
    }
    assert {task_id: t["operator"] for task_id, t in dag["tasks"].items()} == {
        "plan": "BashOperator",
        "build_samples": "SparkSubmitOperator",
        "train_due": "ShortCircuitOperator",
        "train": "SparkSubmitOperator",
        "score": "SparkSubmitOperator",
        "report": "SparkSubmitOperator",
    }


def test_skipped_train_still_lets_score_and_report_run(dag):
    # The gate skips only its direct downstream (train); score runs unless something failed.
    assert dag["ignore_downstream_trigger_rules"] is False
    assert dag["tasks"]["score"]["trigger_rule"] == "none_failed"
    assert dag["tasks"]["report"]["trigger_rule"] == "all_success"


def test_retries_timeouts_catchup_and_schedule(dag):
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    assert {t["retries"] for t in dag["tasks"].values()} == {2}
    # Every task has a time limit, so a hung night cannot hold the next one for ever.
    assert {task_id: t["timeout_hours"] for task_id, t in dag["tasks"].items()} == {
        "plan": 0.25, "build_samples": 3, "train_due": 0.1, "train": 6, "score": 2, "report": 0.5}
    assert dag["schedule"] == {"timetable": "CronDataIntervalTimetable", "expression": "0 2 * * *",
                               "timezone": "UTC"}
    # The run for ds 2026-10-10 starts once that day is over, at 02:00 UTC the next day.
    assert dag["run"] == {"logical_date": "2026-10-10T02:00:00+00:00",
                          "interval_end": "2026-10-11T02:00:00+00:00",
                          "run_after": "2026-10-11T02:00:00+00:00"}


def test_only_force_train_is_a_param(dag):
    # repo and conf_path name what runs: the Variable sets them, never a trigger form.
    assert dag["params"] == {"force_train": False}


def test_the_plan_comes_from_the_project(dag):
    conf = "--conf /opt/mtrank/conf/cluster.yaml"
    assert dag["rendered"]["plan"]["bash_command"] == (
        f"set -o pipefail; {PYTHON} {PLAN_JOB} {conf} --date 2026-10-10 | tail -n 1")
    assert dag["rendered_forced"]["plan"]["bash_command"] == (
        f"set -o pipefail; {PYTHON} {PLAN_JOB} {conf} --date 2026-10-10 --set nightly.force_train=true | tail -n 1")
    # The plan's JSON (its last line) goes to XCom parsed; the gate is its train.due.
    assert dag["plan_output"] == {"train": {"due": True}}
    assert dag["train_due"] == {"true": True, "false": False}


def test_rendered_job_arguments(dag):
    jobs = dag["rendered"]
    conf = ["--conf", "/opt/mtrank/conf/cluster.yaml"]
    assert jobs["build_samples"]["application"] == "/opt/mtrank/jobs/build_samples.py"
    assert jobs["build_samples"]["application_args"] == [*conf, "--date", "2026-10-10"]
    # train trains the plan's window of the night: the DAG computes no dates.
    assert jobs["train"]["application"] == "/opt/mtrank/jobs/train.py"
    assert jobs["train"]["application_args"] == [*conf, "--date", "2026-10-10"]
    assert jobs["score"]["application"] == "/opt/mtrank/jobs/score.py"
    assert jobs["score"]["application_args"] == [*conf, "--date", "2026-10-10"]
    assert jobs["score"]["name"] == "mtrank_score_2026-10-10"
    assert jobs["report"]["application"] == "/opt/mtrank/jobs/report.py"
    assert jobs["report"]["application_args"] == conf
    # force_train reaches the plan only: train trains the same window either way.
    assert dag["rendered_forced"]["train"] == jobs["train"]


def spark_jobs(dag: dict) -> dict:
    return {task_id: job for task_id, job in dag["rendered"].items() if "conn_id" in job}


def test_spark_settings(dag):
    assert sorted(spark_jobs(dag)) == ["build_samples", "report", "score", "train"]
    for job in spark_jobs(dag).values():
        assert job["conn_id"] == "spark_default"
        assert job["packages"] == "io.delta:delta-spark_2.13:4.0.1"
        # No archive: every node runs the checkout's .venv and code, driver and executors alike.
        assert job["archives"] is None
        assert job["py_files"] is None
        assert job["conf"]["spark.pyspark.python"] == PYTHON
        assert "spark.pyspark.driver.python" not in job["conf"]
        assert job["conf"]["spark.executor.memory"] == "8g"


def test_the_archive_and_the_zip_ship_the_dependencies_and_the_code(facts, dag):
    archived = facts["overridden"][1]
    assert archived["import_errors"] == {}
    for task_id, job in spark_jobs(archived).items():
        # spark-submit --archives <archive>#env --py-files <zip> --conf spark.pyspark.python=./env/bin/python
        assert job["archives"] == f"{ARCHIVE}#env"
        assert job["py_files"] == ZIP
        assert job["conf"]["spark.pyspark.python"] == "./env/bin/python"
        # The driver runs on the submitting host (client mode), with the checkout's .venv.
        assert job["conf"]["spark.pyspark.driver.python"] == PYTHON
        assert job["conf"]["spark.executor.memory"] == "8g"
        assert job["application"] == dag["rendered"][task_id]["application"]
        assert job["application_args"] == dag["rendered"][task_id]["application_args"]
    # The plan runs on the Airflow worker, with the checkout's interpreter either way.
    assert archived["rendered"]["plan"] == dag["rendered"]["plan"]


def test_cluster_deploy_mode_keeps_its_driver_python(facts):
    for job in spark_jobs(facts["overridden"][2]).values():
        assert job["archives"] == f"{ARCHIVE}#env"
        assert job["py_files"] == ZIP
        assert job["conf"] == {"spark.pyspark.python": "./env/bin/python",
                               "spark.pyspark.driver.python": "./env/bin/python",
                               "spark.executor.memory": "16g"}


def test_an_archive_without_the_code_is_refused(facts):
    # The archive holds the dependencies only: without py_files the executors would lack pipeline.
    refused = facts["overridden"][3]
    assert "mtrank_nightly" not in refused.get("dag_ids", [])
    [error] = refused["import_errors"].values()
    assert f"archive {ARCHIVE} needs py_files, the code: the dist/mtrank-<version>.zip" in error


def test_variable_overrides_settings(facts):
    dag = facts["overridden"][0]
    assert dag["import_errors"] == {}
    assert dag["schedule"]["expression"] == "30 1 * * *"
    assert dag["run"]["logical_date"] == "2026-10-10T01:30:00+00:00"
    assert {t["retries"] for t in dag["tasks"].values()} == {5}
    assert dag["tasks"]["train"]["timeout_hours"] == 8 and dag["tasks"]["score"]["timeout_hours"] == 2
    train = dag["rendered"]["train"]
    assert train["conn_id"] == "spark_yarn"
    assert train["application"] == "/srv/mtrank/jobs/train.py"
    # An absolute conf_path is kept as it is.
    assert train["application_args"] == ["--conf", "/etc/mtrank/prod.yaml", "--date", "2026-10-10"]
    assert train["conf"]["spark.pyspark.python"] == "/srv/mtrank/.venv/bin/python"
    assert dag["rendered"]["plan"]["bash_command"].startswith(
        "set -o pipefail; /srv/mtrank/.venv/bin/python /srv/mtrank/jobs/plan.py --conf /etc/mtrank/prod.yaml ")
