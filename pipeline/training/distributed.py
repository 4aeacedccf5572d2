"""Horovod on Spark: the one module that calls ``horovod.spark``.

Functions handed to ``run_on_spark`` run in Spark tasks, one Horovod process each; they must be
top-level (picklable) and import heavy libraries inside.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence


def run_on_spark(fn: Callable[..., Any], *, num_proc: int, args: Sequence[Any] = (),
                 kwargs: Optional[dict] = None, start_timeout: int = 300) -> list[Any]:
    """Runs ``fn(*args, **kwargs)`` in ``num_proc`` Horovod processes on the active Spark session.

    Returns:
        The return values of ``fn``, ordered by Horovod rank.
    """
    import horovod.spark

    # Horovod: gloo controller (no MPI needed on executors).
    return horovod.spark.run(fn, args=tuple(args), kwargs=kwargs or {}, num_proc=num_proc,
                             start_timeout=start_timeout, use_gloo=True, verbose=0)


def allreduce_probe() -> dict[str, float]:
    """Checks that the ranks can talk: each contributes ``rank + 1`` to a sum allreduce."""
    import horovod.torch as hvd
    import torch

    hvd.init()  # Horovod: join the job
    total = hvd.allreduce(torch.tensor([float(hvd.rank() + 1)]), op=hvd.Sum)  # Horovod: collective
    return {"rank": hvd.rank(), "size": hvd.size(), "sum": float(total.item())}
