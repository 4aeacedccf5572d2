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
            "train_days": 28, "train_weekday": "saturday"}


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> dict:
    subprocess.run(["bash", str(REPO / ".ci" / "airflow_env.sh")], check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow_home"))
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), str(REPO / "tests" / "dags" / "check_dag.py"), str(REPO / "dags"), DS,
         json.dumps(VARIABLE)],
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
        "build_samples": [],
        "train_due": ["build_samples"],
        "train": ["train_due"],
        "score": ["build_samples", "train"],
    }
    assert {task_id: t["operator"] for task_id, t in dag["tasks"].items()} == {
        "build_samples": "SparkSubmitOperator",
        "train_due": "ShortCircuitOperator",
        "train": "SparkSubmitOperator",
        "score": "SparkSubmitOperator",
    }


def test_skipped_train_still_lets_score_run(dag):
    # The gate skips only its direct downstream (train); score runs unless something failed.
    assert dag["ignore_downstream_trigger_rules"] is False
    assert dag["tasks"]["score"]["trigger_rule"] == "none_failed"


def test_retries_catchup_and_schedule(dag):
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    assert {t["retries"] for t in dag["tasks"].values()} == {2}
    assert dag["schedule"] == {"timetable": "CronDataIntervalTimetable", "expression": "0 2 * * *",
                               "timezone": "UTC"}
    # The run for ds 2026-10-10 starts once that day is over, at 02:00 UTC the next day.
    assert dag["run"] == {"logical_date": "2026-10-10T02:00:00+00:00",
                          "interval_end": "2026-10-11T02:00:00+00:00",
                          "run_after": "2026-10-11T02:00:00+00:00"}


def test_rendered_job_arguments(dag):
    jobs = dag["rendered"]
    conf = ["--conf", "/opt/mtrank/conf/cluster.yaml"]
    assert jobs["build_samples"]["application"] == "/opt/mtrank/jobs/build_samples.py"
    assert jobs["build_samples"]["application_args"] == [*conf, "--date", "2026-10-10"]
    # 14 days ending 6 days before ds: their validation and test days (the next two) are final too.
    assert jobs["train"]["application"] == "/opt/mtrank/jobs/train.py"
    assert jobs["train"]["application_args"] == [*conf, "--start", "2026-09-21", "--end", "2026-10-04"]
    assert jobs["score"]["application"] == "/opt/mtrank/jobs/score.py"
    assert jobs["score"]["application_args"] == [*conf, "--date", "2026-10-10", "--model-id", "latest"]
    assert jobs["score"]["name"] == "mtrank_score_2026-10-10"


def test_spark_settings(dag):
    for job in dag["rendered"].values():
        assert job["conn_id"] == "spark_default"
        assert job["packages"] == "io.delta:delta-spark_2.13:4.0.1"
        assert job["conf"]["spark.pyspark.python"] == "/opt/mtrank/.venv/bin/python"
        assert job["conf"]["spark.executor.memory"] == "8g"


def test_absolute_conf_path_is_kept(dag):
    args = dag["rendered_absolute_conf"]["score"]["application_args"]
    assert args[:2] == ["--conf", "/etc/mtrank/prod.yaml"]


def test_train_runs_on_the_weekday_or_when_forced(dag):
    assert dag["params"]["train_weekday"] == "sunday"
    assert dag["train_due"] == {"2026-10-10": False, "2026-10-11": True}
    assert dag["train_due_forced"] is True


def test_variable_overrides_settings(facts):
    dag = facts["overridden"]
    assert dag["import_errors"] == {}
    assert dag["schedule"]["expression"] == "30 1 * * *"
    assert dag["run"]["logical_date"] == "2026-10-10T01:30:00+00:00"
    assert {t["retries"] for t in dag["tasks"].values()} == {5}
    train = dag["rendered"]["train"]
    assert train["conn_id"] == "spark_yarn"
    assert train["application"] == "/srv/mtrank/jobs/train.py"
    assert train["application_args"] == ["--conf", "/srv/mtrank/conf/cluster.yaml",
                                         "--start", "2026-09-07", "--end", "2026-10-04"]
    assert train["conf"]["spark.pyspark.python"] == "/srv/mtrank/.venv/bin/python"
    assert dag["train_due"] == {"2026-10-10": True, "2026-10-11": False}
