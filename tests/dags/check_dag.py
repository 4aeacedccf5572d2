"""Loads dags/ as the DAG processor does and prints, as JSON, the facts that test_dag.py asserts.

Runs in the Airflow environment (.venv-airflow), not in the project's:

    python check_dag.py DAGS_DIR DS VARIABLE_JSON [VARIABLE_JSON ...]

describes the DAG for the scheduled run of date DS, first as it is, then with the Variable
``mtrank_nightly`` set to each VARIABLE_JSON in turn. Needs no database: the DagBag, the serialized DAG (what
the scheduler sees) and template rendering all work from the DAG file alone.
"""
from __future__ import annotations

import json
import os
import sys

import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.execution_time.context import MacrosAccessor
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import TimeRestriction

DAG_ID = "mtrank_nightly"
SPARK_TASKS = ("build_samples", "train", "score", "report")
HEAVY_MODULES = ("pyspark", "torch", "pipeline")


def scheduled_run(dag, ds: str) -> dict:
    """The scheduler's first run whose data interval starts on ``ds``."""
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.parse(ds, tz="UTC"), latest=None, catchup=True),
    )
    return {
        "logical_date": info.data_interval.start.isoformat(),
        "interval_end": info.data_interval.end.isoformat(),
        "run_after": info.run_after.isoformat(),
    }


def rendered(dag, logical_date: pendulum.DateTime, params: dict) -> dict:
    """Each task's templated fields, rendered as a worker would for ``logical_date``."""
    fields = {task_id: ("application", "application_args", "name", "conf", "packages", "py_files")
              for task_id in SPARK_TASKS}
    fields["plan"] = ("bash_command",)
    out = {}
    for task_id, names in fields.items():
        task = dag.get_task(task_id)
        context = {
            "dag": dag,
            "task": task,
            "ds": logical_date.to_date_string(),
            "logical_date": logical_date,
            "params": params,
            "macros": MacrosAccessor(),
        }
        env = dag.get_template_env()
        # render_template leaves the task unchanged, so the DAG can be rendered again.
        out[task_id] = {field: task.render_template(getattr(task, field), context, env) for field in names}
        if task_id in SPARK_TASKS:
            # Not templated; the operator keeps them private.
            out[task_id]["conn_id"] = task._conn_id
            out[task_id]["archives"] = task._archives
    return out


def describe(dag_folder: str, ds: str) -> dict:
    bag = DagBag(dag_folder=dag_folder, safe_mode=False)
    facts = {
        "import_errors": {str(k): v for k, v in bag.import_errors.items()},
        "warnings": {str(k): list(v) for k, v in bag.captured_warnings.items()},
        "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules],
        "dag_ids": bag.dag_ids,
    }
    dag = bag.dags.get(DAG_ID)
    if dag is None:
        return facts
    run = scheduled_run(dag, ds)
    logical_date = pendulum.parse(run["logical_date"])
    params = dag.params.validate()
    train_due = dag.get_task("train_due").python_callable
    facts.update(
        catchup=dag.catchup,
        max_active_runs=dag.max_active_runs,
        schedule={
            "timetable": type(dag.timetable).__name__,
            "expression": dag.timetable.expression,
            "timezone": str(dag.timetable.timezone),
        },
        run=run,
        params=params,
        tasks={
            t.task_id: {
                "operator": type(t).__name__,
                "upstream": sorted(t.upstream_task_ids),
                "trigger_rule": str(t.trigger_rule.value),
                "retries": t.retries,
                "timeout_hours": t.execution_timeout.total_seconds() / 3600 if t.execution_timeout else None,
            }
            for t in dag.tasks
        },
        ignore_downstream_trigger_rules=dag.get_task("train_due").ignore_downstream_trigger_rules,
        rendered=rendered(dag, logical_date, params),
        rendered_forced=rendered(dag, logical_date, {**params, "force_train": True}),
        # The gate reads the plan's JSON (as the plan task's output_processor parsed it).
        plan_output=dag.get_task("plan").output_processor('{"train": {"due": true}}'),
        train_due={due: train_due({"train": {"due": due}}) for due in (True, False)},
    )
    return facts


if __name__ == "__main__":
    dag_folder, ds, *variables = sys.argv[1:]
    default = describe(dag_folder, ds)
    overridden = []
    for variable in variables:
        # The environment is one of Airflow's secrets backends: AIRFLOW_VAR_<KEY> is Variable <key>.
        os.environ["AIRFLOW_VAR_MTRANK_NIGHTLY"] = variable
        overridden.append(describe(dag_folder, ds))
    # Airflow logs to stdout too: the facts are the last line.
    print(json.dumps({"default": default, "overridden": overridden}, default=str))
