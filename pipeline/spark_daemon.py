"""Spark's Python worker daemon with the heavy libraries imported once
(``spark.python.daemon.module: pipeline.spark_daemon``, the local default).

pyspark's daemon forks a worker process per task slot, and each worker then imports what its
function needs: torch, pyarrow and pandas for scoring and the training set, about 2 s of CPU a
worker; a worker idle for a minute is stopped, and the next task forks a new one. This daemon
imports them before it forks, so its workers start with them loaded.

It must be importable when an executor starts its daemon: true where the project is installed
(local runs, a cluster whose environment holds it), not where the code reaches the executors by
``--py-files`` only, which Spark puts on a worker's path after the daemon has started. Such a
cluster's conf leaves the setting out (conf/cluster.example.yaml does).
"""
import gc
import importlib

from pyspark.daemon import manager

PRELOADED = ("pyarrow", "pandas", "torch")  # pyarrow before torch, as Petastorm advises for the two

if __name__ == "__main__":
    # Only when run as the daemon: a process a worker starts with multiprocessing's "spawn" (as
    # Horovod's Spark tasks do) imports this module again as its main, and needs none of them.
    for _name in PRELOADED:
        importlib.import_module(_name)
    # Their objects out of the collector's passes: a forked worker's collections would otherwise
    # walk them all, writing to every page that holds one (copy-on-write), for seconds of CPU in a
    # worker's life (docs/development.md, "Tests").
    gc.freeze()
    manager()
