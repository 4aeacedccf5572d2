"""Runs the DAG once with ``dag.test()`` and prints, as JSON, how each task ended.

Runs in the Airflow environment (.venv-airflow), not in the project's:

    python run_dag.py DAGS_DIR LOGICAL_DATE

The caller (test_dag_run.py) sets the environment: ``AIRFLOW_HOME`` (a fresh folder: its SQLite
database is created here), the Variable ``mtrank_nightly`` and the Spark connection as
``AIRFLOW_VAR_*`` / ``AIRFLOW_CONN_*``, and a ``PATH`` with ``spark-submit``. Every task runs for
real, in this process (the plan) or as a ``spark-submit`` child (the Spark jobs).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DAG_ID = "mtrank_nightly"


def main(dag_folder: str, logical_date: str) -> dict:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)

    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=dag_folder, safe_mode=False)
    dag = bag.dags[DAG_ID]
    run = dag.test(logical_date=pendulum.parse(logical_date))
    with create_session() as session:
        tis = run.get_task_instances(session=session)
        states = {ti.task_id: str(ti.state) for ti in tis}
        seconds = {ti.task_id: round(ti.duration or 0.0, 1) for ti in tis}
        query = XComModel.get_many(run_id=run.run_id, dag_ids=DAG_ID, task_ids="plan", key="return_value")
        plans = [XComModel.deserialize_value(row) for row in session.scalars(query)]
    return {"state": str(run.state), "tasks": states, "seconds": seconds, "plan": plans[0] if plans else None}


if __name__ == "__main__":
    facts = main(*sys.argv[1:3])
    # Airflow logs to stdout too: the facts are the last line.
    print(json.dumps(facts, default=str))
