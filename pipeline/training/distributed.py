"""Horovod on Spark: the one module that calls Horovod.

``run_on_spark`` starts ``num_proc`` Horovod processes as Spark tasks (gloo controller, no MPI),
so the same job runs in ``local[N]`` and on a cluster. Functions handed to it run in those tasks:
they must be top-level (picklable) and import heavy libraries inside.

``HorovodRanks`` is the training loop's ``Ranks`` interface (``pipeline.training.ranks``) over
Horovod; ``SingleProcess`` stands in for it when one process trains, so the loop has no Horovod
branches. ``training.backend: torch_distributor`` replaces this module by
``pipeline.training.torch_distributor``.

A job never hangs the night: a watchdog thread (``ranks.Watchdog``) cancels its Spark job group
(which kills the tasks' Python workers and with them the ranks) once the job passes its time
limit, or when a rank failed and the others have not ended ``ranks.FAILED_RANK_GRACE_S`` later.
The ranks also get Horovod's stall check (``HOROVOD_STALL_*`` from ``stall_seconds``), but
horovod 0.28.1 with the gloo controller was seen neither to warn nor to shut down while one rank
slept outside any collective (80 s, with ``horovodrun`` as with Spark): the time limit is what
bounds a hung rank. Every way a job fails ends in one line: ``PipelineError`` when a rank raised
one (its input is wrong), ``RunFailure`` otherwise, and nothing else is printed: the failure
Horovod's own thread re-raises as it ends is left unprinted (``_horovod_thread_errors_unprinted``).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from pipeline.training.ranks import SingleProcess, Watchdog, errors_recorded, job_failure

SUM_POLL_S = 0.001  # how often a rank waiting in ``HorovodRanks.sum`` looks again


class HorovodRanks(SingleProcess):
    """The Horovod process group of a ``run_on_spark`` task; ``hvd.init()`` on creation."""

    def __init__(self) -> None:
        import horovod.torch as hvd

        hvd.init()  # Horovod: join the job
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self._synced: tuple[Sequence[nn.Module], Sequence[torch.optim.Optimizer]] = ((), ())

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        names = sorted(values)
        tensor = torch.tensor([float(values[n]) for n in names], dtype=torch.float64)
        handle = self.hvd.allreduce_async(tensor, op=self.hvd.Sum, name="loop.sum")  # Horovod: collective
        # Waits asleep for the other ranks: Horovod's own wait (synchronize) spins on sched_yield,
        # a core busy for as long as a peer validates, checkpoints or hangs.
        while not self.hvd.poll(handle):
            time.sleep(SUM_POLL_S)
        return dict(zip(names, self.hvd.synchronize(handle).tolist()))

    def distributed(self, optimizer: torch.optim.Optimizer, *modules: nn.Module):
        names = {id(p): f"m{i}.{name}" for i, module in enumerate(modules) for name, p in module.named_parameters()}
        named = [(names[id(p)], p) for group in optimizer.param_groups for p in group["params"]]
        # Horovod: gradients are averaged over the ranks at every step (one wrapper per optimizer,
        # each over its own parameters).
        return self.hvd.DistributedOptimizer(optimizer, named_parameters=named)

    def sync(self, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self._broadcast(modules, optimizers, root=0)  # at the start, after a resume: rank 0's state
        self._synced = (modules, optimizers)

    def join(self) -> None:
        # Horovod: a rank out of batches contributes zeros until the others finish theirs, so
        # uneven shards never deadlock the collective steps. It stops stepping, though: the rank
        # that joined last took every step, and its state becomes everyone's (rank 0 validates
        # and checkpoints it).
        last = self.hvd.join()
        self._broadcast(*self._synced, root=last)

    def _broadcast(self, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer],
                   root: int) -> None:
        for module in modules:
            self.hvd.broadcast_parameters(module.state_dict(), root_rank=root)  # Horovod: the same weights
        for optimizer in optimizers:
            self.hvd.broadcast_optimizer_state(optimizer, root_rank=root)  # Horovod: the same optimizer state


def run_on_spark(fn: Callable[..., Any], *, num_proc: int, args: Sequence[Any] = (),
                 kwargs: Optional[dict] = None, error_dir: Optional[str] = None,
                 start_timeout: int = 300, time_limit_s: Optional[float] = None,
                 stall_seconds: Optional[int] = None) -> list[Any]:
    """Runs ``fn(*args, **kwargs)`` in ``num_proc`` Horovod processes on the active Spark session.

    Args:
        fn: a top-level function.
        num_proc: processes (Spark tasks); at most the cluster's free task slots.
        args, kwargs: its arguments (pickled to the tasks).
        error_dir: a folder every task can write (shared storage on a cluster); a rank that
            raises leaves its error there, so the job fails with that error, not a generic one,
            and a job whose other ranks hang after a rank failed is cancelled.
        start_timeout: seconds to wait for the tasks to start.
        time_limit_s: wall-clock seconds the whole job may take (``training.time_limit_minutes``);
            past them it is cancelled. None: no limit.
        stall_seconds: Horovod's stall check: shut the job down when a rank has waited this long
            for the others in a collective (``training.stall_seconds``; see the module doc for
            what was seen of it). None: Horovod's default (warn only).

    Returns:
        The return values of ``fn``, ordered by Horovod rank.

    Raises:
        PipelineError: a rank raised a ``PipelineError`` (named with its rank).
        RunFailure: a rank failed otherwise, Horovod shut the job down, or the time limit passed.
    """
    import horovod.spark
    from horovod.spark.driver import job_id
    from pyspark import SparkContext

    env = {}
    if stall_seconds:
        # Horovod: rank 0 looks for stalled collectives every check time and shuts the job down
        # past the shutdown time (read by every rank's hvd.init(), gloo controller included; a
        # shutdown time below the check time never shuts down).
        env = {"HOROVOD_STALL_CHECK_TIME_SECONDS": str(max(1, stall_seconds // 2)),
               "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": str(stall_seconds)}
    # Horovod: the Spark job group the run is about to create. Runs cannot overlap in a driver
    # (horovod.spark.run installs signal handlers, so it runs in the main thread only).
    group = f"horovod.spark.run.{job_id.JOB_ID + 1}"
    context = SparkContext._active_spark_context
    watchdog = Watchdog(group, lambda: context.cancelJobGroup(group), time_limit_s, error_dir)
    guarded = (_record_errors, (fn, error_dir, *args)) if error_dir else (fn, tuple(args))
    # Horovod: gloo controller (no MPI needed on executors).
    with _horovod_thread_errors_unprinted():
        return watchdog.guard(lambda: horovod.spark.run(guarded[0], args=tuple(guarded[1]), kwargs=kwargs or {},
                                                        num_proc=num_proc, start_timeout=start_timeout,
                                                        use_gloo=True, env=env, verbose=0),
                              lambda exc, reason: _job_failure(exc, error_dir, reason, time_limit_s, stall_seconds))


@contextlib.contextmanager
def _horovod_thread_errors_unprinted() -> Iterator[None]:
    """Leaves unprinted the exception of Horovod's thread that runs the ranks' Spark job.

    Horovod: ``horovod.spark.run`` runs the job in a thread (``run_spark``) that re-raises the
    job's failure (a failed task, the group the watchdog cancelled) and joins it before returning
    or raising. Python would print that exception's traceback (pages of Java frames); the same
    failure is what ``run_on_spark`` raises, as one line. Other threads' exceptions print as before.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (args.thread is not None and args.thread.name.endswith("(run_spark)")):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _job_failure(exc: Exception, error_dir: Optional[str], reason: Optional[str], time_limit_s: Optional[float],
                 stall_seconds: Optional[int]) -> Optional[Exception]:
    """The one-line error a failed job raises (``ranks.job_failure``); None for an exception that
    is a bug of the caller."""
    return job_failure(exc, error_dir, reason, time_limit_s, stall_seconds, "Horovod shut the job down on")


def _record_errors(fn: Callable[..., Any], error_dir: str, *args: Any, **kwargs: Any) -> Any:
    """Calls ``fn`` with its errors recorded (``ranks.errors_recorded``).

    Horovod's own shutdown error is recorded as such: it is what the other ranks see when one
    fails (or when Horovod's stall check ends the job), not a cause.
    """
    from horovod.common.exceptions import HorovodInternalError

    rank = os.environ.get("HOROVOD_RANK", "unknown")  # Horovod: set in every task it starts
    with errors_recorded(error_dir, rank, shutdown=(HorovodInternalError,)):
        return fn(*args, **kwargs)

