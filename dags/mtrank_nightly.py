"""Nightly mtrank chain: the night's plan, then build-samples, train when the plan says so, score, report.

    plan >> build_samples >> train_due >> train >> score >> report   (score also runs when train is skipped)

The plan is the project's own (``pipeline plan --date {{ ds }}``, pipeline/plan.py): whether
training is due (weekday, daily, forced, or no model yet), its window and model all come from the
conf, so this file computes no date, window or weekday and ``pipeline run`` cannot disagree with
it. ``plan`` runs ``jobs/plan.py`` with the checkout's interpreter and pushes the plan (JSON) to
XCom; ``train_due`` skips ``train`` unless ``train.due``; every other task is a ``spark-submit``
of a job file of the checkout (``<repo>/jobs/*.py``), and train (``--date {{ ds }}``) trains the
plan's window. The run for date D (``ds``) starts when D's data interval ends (02:00 UTC on D + 1
by default).

Settings: ``DEFAULTS`` below, overridden key by key by the JSON Airflow Variable ``mtrank_nightly``,
e.g. ``{"repo": "/srv/mtrank", "conn_id": "spark_yarn", "timeout_hours": {"train": 8}}`` (read at
each parse). Only the Variable sets them, never a trigger form: ``repo`` names the interpreter the
tasks run. A manual run may set one param, ``force_train``.

Where the executors' Python and code come from: without ``archive`` (the default, and the DAG's
local test) every node runs ``<repo>/.venv/bin/python`` and the checkout's code, so every node
needs the checkout. ``make package`` builds two layers, copied where the cluster reads them:
``archive``, the dependencies (dist/mtrank-env.tar.gz, rebuilt only when a pin changes), and
``py_files``, the code (dist/mtrank-<version>.zip, one per deploy). With both, each Spark task is
submitted with ``--archives <archive>#env``, ``--py-files <py_files>`` and
``--conf spark.pyspark.python=./env/bin/python``: every executor unpacks the archive as ``./env``,
runs its python and imports ``pipeline`` from the zip, and only the submitting host needs the
checkout. The driver then runs on that host (client deploy mode) with ``<repo>/.venv/bin/python``
and the zip's ``pipeline``, unless ``spark_conf`` sets ``spark.pyspark.driver.python``
(docs/deployment.md). The archive holds no ``pipeline``, so ``archive`` without ``py_files`` is
refused (the DAG does not load).
"""
from __future__ import annotations

import json
import os
import shlex
from datetime import timedelta

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TriggerRule, Variable

DEFAULTS = {
    "schedule": "0 2 * * *",  # cron, UTC; ds is the day that ended before the run
    "conn_id": "spark_default",  # Spark connection: master, deploy mode, spark-submit binary
    "repo": "/opt/mtrank",  # checkout holding jobs/*.py, conf/ and .venv
    "conf_path": "conf/cluster.yaml",  # relative to repo, or absolute
    "retries": 2,
    # Each task fails (and is retried) past its limit, so a hung task cannot hold the nights after
    # it (one run at a time). train's limit leaves room above the job's own
    # training.time_limit_minutes (4 h by default), which fails it with a clearer reason first.
    "timeout_hours": {"plan": 0.25, "build_samples": 3, "train_due": 0.1, "train": 6, "score": 2, "report": 0.5},
    # Templated: "{{ repo }}" is the checkout. The driver runs jobs/*.py with the project's .venv.
    "spark_conf": {
        "spark.pyspark.python": "{{ repo }}/.venv/bin/python",
        "spark.driver.memory": "4g",
        "spark.executor.memory": "8g",
        "spark.executor.cores": "4",
    },
    "packages": "io.delta:delta-spark_2.13:4.0.1",
    # The two layers of one `make package`, where the cluster reads them; null: the executors run
    # {{ repo }}/.venv and the checkout's code. The dependencies: dist/mtrank-env.tar.gz, e.g.
    # "hdfs:///apps/mtrank/mtrank-deps-577da18fef5a.tar.gz" (its name in the build cache); it needs
    # py_files, the code: dist/mtrank-<version>.zip, e.g. "hdfs:///apps/mtrank/mtrank-0.2.0.zip".
    "archive": None,
    "py_files": None,
}
SETTINGS = {**DEFAULTS, **Variable.get("mtrank_nightly", default={}, deserialize_json=True)}
TIMEOUT_HOURS = {**DEFAULTS["timeout_hours"], **SETTINGS["timeout_hours"]}
ARCHIVE_ALIAS = "env"  # the folder each container unpacks the archive into

REPO = SETTINGS["repo"]
CONF = os.path.join(REPO, SETTINGS["conf_path"])  # an absolute conf_path stays as it is
# The plan's JSON is the last line of stdout; the tail waits for the session's JVM to exit, so
# nothing it logs can come after the plan.
PLAN_COMMAND = (
    f"set -o pipefail; {shlex.quote(REPO + '/.venv/bin/python')} {shlex.quote(REPO + '/jobs/plan.py')}"
    f" --conf {shlex.quote(CONF)} --date {{{{ ds }}}}"
    "{{ ' --set nightly.force_train=true' if params.force_train else '' }} | tail -n 1"
)


def train_due(plan: dict) -> bool:
    """The gate of ``train``: the plan's ``train.due``."""
    return bool(plan["train"]["due"])


def timeout(task_id: str) -> timedelta:
    return timedelta(hours=float(TIMEOUT_HOURS[task_id]))


def python_settings(spark_conf: dict, archive: str | None, py_files: str | None) -> tuple[dict, str | None]:
    """The ``conf`` and ``archives`` of every Spark task: which Python the executors run.

    Args:
        spark_conf: the ``spark_conf`` setting.
        archive: the ``archive`` setting, or None.
        py_files: the ``py_files`` setting, or None.

    Returns:
        ``spark_conf`` and no archives without an archive. With one: ``<archive>#env``, and
        ``spark_conf`` with the executors on the unpacked archive's python and the driver, which
        runs where the checkout is (client mode), on the checkout's unless ``spark_conf`` says.

    Raises:
        ValueError: an archive without py_files (the archive holds the dependencies, not the code).
    """
    if not archive:
        return spark_conf, None
    if not py_files:
        raise ValueError(f"mtrank_nightly: archive {archive} needs py_files, the code: the "
                         "dist/mtrank-<version>.zip of the same `make package` (docs/deployment.md)")
    conf = {"spark.pyspark.driver.python": "{{ repo }}/.venv/bin/python", **spark_conf,
            "spark.pyspark.python": f"./{ARCHIVE_ALIAS}/bin/python"}
    return conf, f"{archive}#{ARCHIVE_ALIAS}"


SPARK_CONF, ARCHIVES = python_settings(SETTINGS["spark_conf"], SETTINGS["archive"], SETTINGS["py_files"])


def spark_job(job: str, args: list[str], **kwargs) -> SparkSubmitOperator:
    """One ``spark-submit <repo>/jobs/<job>.py --conf CONF ARGS`` task named after the job."""
    return SparkSubmitOperator(
        task_id=job,
        name="mtrank_%s_{{ ds }}" % job,
        application=os.path.join(REPO, "jobs", f"{job}.py"),
        application_args=["--conf", CONF, *args],
        conn_id=SETTINGS["conn_id"],
        conf=SPARK_CONF,
        archives=ARCHIVES,
        packages=SETTINGS["packages"],
        py_files=SETTINGS["py_files"],
        execution_timeout=timeout(job),
        **kwargs,
    )


with DAG(
    dag_id="mtrank_nightly",
    description="plan, build-samples, train when due, score, report (spark-submit of jobs/*.py)",
    schedule=CronDataIntervalTimetable(SETTINGS["schedule"], timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # build-samples heals missed nights itself (it rebuilds every non-final day)
    max_active_runs=1,  # two nights would rebuild the same days; the time limits bound the wait
    default_args={"owner": "mtrank", "retries": SETTINGS["retries"], "retry_delay": timedelta(minutes=10)},
    params={"force_train": Param(False, type="boolean", description="train tonight whatever the plan's weekday")},
    user_defined_macros={"repo": REPO},
    tags=["mtrank"],
) as dag:
    plan = BashOperator(task_id="plan", bash_command=PLAN_COMMAND, output_processor=json.loads,
                        execution_timeout=timeout("plan"))
    build_samples = spark_job("build_samples", ["--date", "{{ ds }}"])
    # Skips only train (not score: ignore_downstream_trigger_rules=False), visibly in the grid.
    gate = ShortCircuitOperator(task_id="train_due", python_callable=train_due, op_kwargs={"plan": plan.output},
                                ignore_downstream_trigger_rules=False, execution_timeout=timeout("train_due"))
    train = spark_job("train", ["--date", "{{ ds }}"])
    # Scores with the model score uses by default: this run's when train ran, else the last one.
    score = spark_job("score", ["--date", "{{ ds }}"], trigger_rule=TriggerRule.NONE_FAILED)
    report = spark_job("report", [])

    plan >> build_samples >> gate >> train >> score >> report
    build_samples >> score
