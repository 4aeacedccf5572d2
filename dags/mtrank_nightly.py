"""Nightly mtrank chain: build-samples every night, train once a week (or on demand), score every night.

    build_samples >> train_due >> train >> score        (score also runs when train_due skips train)

Each task is a ``spark-submit`` of a job file of the project checkout (``<repo>/jobs/*.py``). The
run for date D (``ds``) starts when D's data interval ends (02:00 UTC on D + 1 by default).

Settings: ``DEFAULTS`` below, overridden key by key by the JSON Airflow Variable ``mtrank_nightly``,
e.g. ``{"repo": "/srv/mtrank", "conn_id": "spark_yarn", "train_weekday": "monday"}`` (read at each
parse). ``schedule``, ``conn_id``, ``spark_conf``, ``packages``, ``py_files`` and ``retries`` are
set only there; the other keys are DAG params, which a manual run may also change in the trigger
form (e.g. ``force_train``).
"""
from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TriggerRule, Variable

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

DEFAULTS = {
    "schedule": "0 2 * * *",  # cron, UTC; ds is the day that ended before the run
    "conn_id": "spark_default",  # Spark connection: master, deploy mode, spark-submit binary
    "repo": "/opt/mtrank",  # checkout holding jobs/*.py, conf/ and .venv
    "conf_path": "conf/cluster.yaml",  # relative to repo, or absolute
    "train_weekday": "sunday",
    "train_days": 14,  # training window length
    # Days from the last training day to ds: the lookback (click 1 + attribution 3 days) after the
    # test day, plus the validation and test days, so all three have final labels.
    "label_delay_days": 6,
    "retries": 2,
    # Templated ("{{ params.repo }}" works). The driver runs jobs/*.py with the project's .venv.
    "spark_conf": {
        "spark.pyspark.python": "{{ params.repo }}/.venv/bin/python",
        "spark.driver.memory": "4g",
        "spark.executor.memory": "8g",
        "spark.executor.cores": "4",
    },
    "packages": "io.delta:delta-spark_2.13:4.0.1",
    "py_files": None,  # e.g. a zip of pipeline/ when executors lack the package
}
SETTINGS = {**DEFAULTS, **Variable.get("mtrank_nightly", default={}, deserialize_json=True)}

# Templates shared by the three jobs.
APPLICATION = "{{ params.repo }}/jobs/%s.py"
CONF = "{{ params.repo | path_join(params.conf_path) }}"
TRAIN_START = "{{ macros.ds_add(ds, -(params.label_delay_days + params.train_days - 1)) }}"
TRAIN_END = "{{ macros.ds_add(ds, -params.label_delay_days) }}"


def is_train_day(logical_date: pendulum.DateTime, params: dict) -> bool:
    """True on ``params.train_weekday`` (of ``ds``), or on any day when ``params.force_train`` is set."""
    return params["force_train"] or WEEKDAYS[logical_date.weekday()] == params["train_weekday"]


def spark_job(job: str, args: list[str], **kwargs) -> SparkSubmitOperator:
    """One ``spark-submit <repo>/jobs/<job>.py --conf CONF ARGS`` task named after the job."""
    return SparkSubmitOperator(
        task_id=job,
        name="mtrank_%s_{{ ds }}" % job,
        application=APPLICATION % job,
        application_args=["--conf", CONF, *args],
        conn_id=SETTINGS["conn_id"],
        conf=SETTINGS["spark_conf"],
        packages=SETTINGS["packages"],
        py_files=SETTINGS["py_files"],
        **kwargs,
    )


with DAG(
    dag_id="mtrank_nightly",
    description="build-samples, weekly train, score (spark-submit of jobs/*.py)",
    schedule=CronDataIntervalTimetable(SETTINGS["schedule"], timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mtrank", "retries": SETTINGS["retries"], "retry_delay": timedelta(minutes=10)},
    params={
        "repo": Param(SETTINGS["repo"], type="string"),
        "conf_path": Param(SETTINGS["conf_path"], type="string"),
        "train_weekday": Param(SETTINGS["train_weekday"], enum=WEEKDAYS),
        "train_days": Param(SETTINGS["train_days"], type="integer", minimum=1),
        "label_delay_days": Param(SETTINGS["label_delay_days"], type="integer", minimum=0),
        "force_train": Param(False, type="boolean", description="train tonight whatever the weekday"),
    },
    user_defined_filters={"path_join": os.path.join},
    tags=["mtrank"],
) as dag:
    build_samples = spark_job("build_samples", ["--date", "{{ ds }}"])
    # Skips only train (not score: ignore_downstream_trigger_rules=False), visibly in the grid.
    train_due = ShortCircuitOperator(
        task_id="train_due", python_callable=is_train_day, ignore_downstream_trigger_rules=False
    )
    train = spark_job("train", ["--start", TRAIN_START, "--end", TRAIN_END])
    # Scores with the newest registered model: this run's when train ran, else the last one.
    score = spark_job(
        "score", ["--date", "{{ ds }}", "--model-id", "latest"], trigger_rule=TriggerRule.NONE_FAILED
    )

    build_samples >> train_due >> train >> score
    build_samples >> score
