"""Horovod on Spark: the one module that calls Horovod.

``run_on_spark`` starts ``num_proc`` Horovod processes as Spark tasks (gloo controller, no MPI),
so the same job runs in ``local[N]`` and on a cluster. Functions handed to it run in those tasks:
they must be top-level (picklable) and import heavy libraries inside.

``Ranks`` is what the training loop needs from the process group; ``SingleProcess`` stands in
for it when one process trains, so the loop has no Horovod branches.

A job never hangs the night: a watchdog thread cancels its Spark job group (which kills the
tasks' Python workers and with them the ranks) once the job passes its time limit, or when a
rank failed and the others have not ended ``FAILED_RANK_GRACE_S`` later. The ranks also get
Horovod's stall check (``HOROVOD_STALL_*`` from ``stall_seconds``), but horovod 0.28.1 with the
gloo controller was seen neither to warn nor to shut down while one rank slept outside any
collective (80 s, with ``horovodrun`` as with Spark): the time limit is what bounds a hung rank.
Every way a job fails ends in one line: ``PipelineError`` when a rank raised one (its input is
wrong), ``RunFailure`` otherwise.
"""
from __future__ import annotations

import glob
import json
import math
import os
import threading
import time
import traceback
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from pipeline.errors import PipelineError, RunFailure

# Seconds the ranks get to end after one of them failed, before the job is cancelled.
FAILED_RANK_GRACE_S = 30.0


class SingleProcess:
    """One process: rank 0 of 1; every collective is the identity."""

    rank, size = 0, 1

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Sums of ``values`` over the ranks (here: ``values``)."""
        return dict(values)

    def distributed(self, optimizer: torch.optim.Optimizer, *modules: nn.Module):
        """``optimizer`` (over parameters of ``modules``), averaging gradients over the ranks."""
        return optimizer

    def sync(self, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Gives every rank rank 0's weights and optimizer states (here: nothing to do)."""

    def join(self) -> None:
        """Waits for the ranks still stepping (here: none)."""


class HorovodRanks(SingleProcess):
    """The Horovod process group of a ``run_on_spark`` task; ``hvd.init()`` on creation."""

    def __init__(self) -> None:
        import horovod.torch as hvd

        hvd.init()  # Horovod: join the job
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        names = sorted(values)
        tensor = torch.tensor([float(values[n]) for n in names], dtype=torch.float64)
        total = self.hvd.allreduce(tensor, op=self.hvd.Sum, name="loop.sum")  # Horovod: collective
        return dict(zip(names, total.tolist()))

    def distributed(self, optimizer: torch.optim.Optimizer, *modules: nn.Module):
        names = {id(p): f"m{i}.{name}" for i, module in enumerate(modules) for name, p in module.named_parameters()}
        named = [(names[id(p)], p) for group in optimizer.param_groups for p in group["params"]]
        # Horovod: gradients are averaged over the ranks at every step (one wrapper per optimizer,
        # each over its own parameters).
        return self.hvd.DistributedOptimizer(optimizer, named_parameters=named)

    def sync(self, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        for module in modules:
            # Horovod: rank 0's weights everywhere (at the start, after a resume, after join).
            self.hvd.broadcast_parameters(module.state_dict(), root_rank=0)
        for optimizer in optimizers:
            self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)  # Horovod: same optimizer state

    def join(self) -> None:
        # Horovod: a rank out of batches contributes zeros until the others finish theirs, so
        # uneven shards never deadlock the collective steps.
        self.hvd.join()


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
    watchdog = _Watchdog(SparkContext._active_spark_context, group, time_limit_s, error_dir)
    guarded = (_record_errors, (fn, error_dir, *args)) if error_dir else (fn, tuple(args))
    watchdog.start()
    try:
        # Horovod: gloo controller (no MPI needed on executors).
        return horovod.spark.run(guarded[0], args=tuple(guarded[1]), kwargs=kwargs or {}, num_proc=num_proc,
                                 start_timeout=start_timeout, use_gloo=True, env=env, verbose=0)
    except Exception as exc:  # noqa: BLE001 - turned into the job's one-line failure below
        failure = _job_failure(exc, error_dir, watchdog.reason, time_limit_s, stall_seconds)
        if failure is None:
            raise
        raise failure from exc
    finally:
        watchdog.stop()


def time_limit_failure(seconds: float) -> RunFailure:
    """The failure of a training that ran past its time limit of ``seconds``."""
    return RunFailure(f"training exceeded training.time_limit_minutes={seconds / 60:g}")


class _Watchdog(threading.Thread):
    """Cancels a Spark job group past a deadline, or a while after a rank recorded its failure
    (the others may hang rather than fail); ``reason`` says which ("time_limit", "failed_rank")."""

    def __init__(self, context: Any, group: str, time_limit_s: Optional[float], error_dir: Optional[str]) -> None:
        super().__init__(name=f"watchdog {group}", daemon=True)
        self.context, self.group, self.error_dir = context, group, error_dir
        self.deadline = time.monotonic() + time_limit_s if time_limit_s else math.inf
        self.reason: Optional[str] = None
        self._stopped = threading.Event()

    def run(self) -> None:
        failed_at = math.inf
        while not self._stopped.wait(1.0):
            now = time.monotonic()
            if failed_at == math.inf and self.error_dir and glob.glob(os.path.join(self.error_dir, "rank-*.json")):
                failed_at = now
            if now > self.deadline or now > failed_at + FAILED_RANK_GRACE_S:
                self.reason = "time_limit" if now > self.deadline else "failed_rank"
                break
        # Cancelling kills the tasks' Python workers, and with them the ranks; again until the
        # run has returned, in case the job had not started yet.
        while self.reason and not self._stopped.is_set():
            self.context.cancelJobGroup(self.group)
            self._stopped.wait(5.0)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def _job_failure(exc: Exception, error_dir: Optional[str], reason: Optional[str], time_limit_s: Optional[float],
                 stall_seconds: Optional[int]) -> Optional[Exception]:
    """The one-line error a failed job raises; None for an exception that is a bug of the caller."""
    if reason == "time_limit":
        return time_limit_failure(time_limit_s)
    errors = []
    for name in sorted(glob.glob(os.path.join(error_dir, "rank-*.json"))) if error_dir else []:
        with open(name, encoding="utf-8") as fh:
            errors.append((os.path.basename(name)[:-5], json.load(fh)))
    own = [(rank, error) for rank, error in errors if not error["shutdown"]]
    if own:
        rank, error = own[0]
        kind = PipelineError if error["input"] else RunFailure
        return kind(f"training failed on {rank}: {error['error']}")
    if errors:
        rank, error = errors[0]
        stall = f" longer than training.stall_seconds={stall_seconds}" if stall_seconds else ""
        return RunFailure(f"training failed: Horovod shut the job down on {rank} ({error['error']}): another "
                          f"rank crashed, or stalled{stall}")
    if isinstance(exc, RuntimeError):
        return RunFailure(f"training failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}")
    return None


def _record_errors(fn: Callable[..., Any], error_dir: str, *args: Any, **kwargs: Any) -> Any:
    """Calls ``fn``; on an exception writes ``rank-<r>.json`` (its last line, whether it is an
    input error) and re-raises.

    Horovod's own shutdown error is recorded as such: it is what the other ranks see when one
    fails (or when Horovod's stall check ends the job), not a cause.
    """
    from horovod.common.exceptions import HorovodInternalError

    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded, then raised again
        os.makedirs(error_dir, exist_ok=True)
        ours = isinstance(exc, (PipelineError, RunFailure))  # one-line messages already
        line = " ".join((str(exc) if ours else traceback.format_exception_only(type(exc), exc)[-1]).split())
        record = {"error": line, "input": isinstance(exc, PipelineError),
                  "shutdown": isinstance(exc, HorovodInternalError)}
        rank = os.environ.get("HOROVOD_RANK", "unknown")  # Horovod: set in every task it starts
        tmp = os.path.join(error_dir, f".rank-{rank}.json")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, os.path.join(error_dir, f"rank-{rank}.json"))  # never read half-written
        raise


def allreduce_probe() -> dict[str, float]:
    """Checks that the ranks can talk: each contributes ``rank + 1`` to a sum allreduce."""
    ranks = HorovodRanks()
    total = ranks.sum({"value": float(ranks.rank + 1)})
    return {"rank": ranks.rank, "size": ranks.size, "sum": total["value"]}
