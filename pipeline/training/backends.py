"""The training backends (``training.backend``): what starts the ranks on Spark, and what each
rank's training loop talks to. This mapping is the one place that looks at the backend.

``horovod`` (the default): ``horovod.spark.run`` and Horovod's collectives
(``pipeline.training.distributed``). ``torch_distributor``: Spark's TorchDistributor and
``torch.distributed`` (``pipeline.training.torch_distributor``). Both read the same Petastorm
shards, fail in one line and stop at the same time limit; docs/backends.md compares them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pipeline.training.distributed import HorovodRanks, run_on_spark
from pipeline.training.ranks import SingleProcess
from pipeline.training.torch_distributor import TorchRanks, run_with_torch_distributor


@dataclass(frozen=True)
class Backend:
    """A way to train with several processes.

    Attributes:
        run: ``run(fn, *, num_proc, args, kwargs, error_dir, time_limit_s, stall_seconds)`` runs
            the top-level ``fn`` in ``num_proc`` processes on the active Spark session and returns
            their results by rank (``run_on_spark``).
        ranks: called inside such a process: its process group, for the training loop.
    """

    run: Callable[..., list[Any]]
    ranks: Callable[[], SingleProcess]


BACKENDS = {
    "horovod": Backend(run=run_on_spark, ranks=HorovodRanks),
    "torch_distributor": Backend(run=run_with_torch_distributor, ranks=TorchRanks),
}
