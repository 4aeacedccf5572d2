"""A spark-submit application for tests/test_packaging.py: a job file, then where the driver's and
the executors' Python, torch and pipeline come from, in the same application.

    spark-submit [--archives ... --py-files ...] tests/where_python_runs.py JOB_FILE [JOB ARGUMENTS]

Runs JOB_FILE (e.g. jobs/score.py) as ``__main__`` with the arguments after it, then prints one
line ``where: {"driver": {...}, "executors": [{...}, ...]}`` (JSON) and exits with the job's
status. One application for both, since Spark unpacks ``--archives`` once per application; the
job first, since it makes the Spark session (with Delta) that this script then uses.
"""
import json
import os
import runpy
import sys


def where() -> dict:
    """This process's interpreter, working folder and the files ``pipeline`` and ``torch`` come from."""
    import pipeline
    import torch

    return {"executable": sys.executable, "prefix": sys.prefix, "cwd": os.getcwd(), "sys_path": sys.path,
            "pipeline": os.path.abspath(pipeline.__file__), "torch": os.path.abspath(torch.__file__)}


def main() -> None:
    sys.argv = sys.argv[1:]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
        status = 0
    except SystemExit as stop:
        status = stop.code

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()  # the job's
    rdd = spark.sparkContext.parallelize(range(2), 2)
    executors = rdd.mapPartitions(lambda _: [where()]).collect()
    print("where: " + json.dumps({"driver": where(), "executors": executors}), flush=True)
    # Stopped here rather than by the JVM's shutdown hooks, whose 30 s limits the deletion of the
    # driver's unpacked copy of the archive outlasts.
    spark.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
