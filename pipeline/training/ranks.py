"""What the training backends share: the ``Ranks`` interface of the loop, the watchdog that
bounds a job, and the error records that make a failed job one line.

``SingleProcess`` is the interface the training loop talks to (rank, size, sums, gradient
averaging, weight sync, uneven ends), as a null object for one process; each backend
(``pipeline.training.backends``) subclasses it.

A job of several ranks never hangs the night: ``Watchdog`` cancels its Spark jobs once it passes
its time limit, when a rank failed and the others have not ended ``FAILED_RANK_GRACE_S``
later, or when its ranks all returned (``RESULTS`` written) and its Spark job has not ended
``LATE_END_GRACE_S`` later; the run then returns the results written. A rank that raises
leaves a record of its error (``errors_recorded``), so the job fails with that error in one line
(``recorded_failure``): ``PipelineError`` when the rank raised one (its input is wrong),
``RunFailure`` otherwise. Ranks that failed only because another one did
(the backend's own "a peer is gone" error) record that as a shutdown, not as a cause.
"""
from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import pickle
import threading
import time
import traceback
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import torch
from torch import nn

from pipeline.errors import PipelineError, RunFailure

T = TypeVar("T")

# Seconds the ranks get to end after one of them failed, before the job is cancelled.
FAILED_RANK_GRACE_S = 30.0
# Seconds a job gets to end after its ranks all returned, before it is cancelled: torchrun's
# agents can wait 300 s on their exit barrier once the ranks are done (docs/backends.md).
LATE_END_GRACE_S = 30.0
# What rank 0 writes into the error folder once every rank returned: their results, by rank.
RESULTS = "results.pkl"


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


def time_limit_failure(seconds: float) -> RunFailure:
    """The failure of a training that ran past its time limit of ``seconds``."""
    return RunFailure(f"training exceeded training.time_limit_minutes={seconds / 60:g}")


class Watchdog(threading.Thread):
    """Calls ``cancel`` (which cancels the job's Spark jobs, killing the tasks' Python workers and
    with them the ranks) past a deadline, a while after a rank recorded its failure (the others
    may hang rather than fail), or a while after the ranks' results were written (the job is done
    but its launcher has not ended); ``reason`` says which ("time_limit", "failed_rank",
    "late_end")."""

    def __init__(self, name: str, cancel: Callable[[], None], time_limit_s: Optional[float],
                 error_dir: Optional[str]) -> None:
        super().__init__(name=f"watchdog {name}", daemon=True)
        self.cancel, self.error_dir = cancel, error_dir
        self.deadline = time.monotonic() + time_limit_s if time_limit_s else math.inf
        self.reason: Optional[str] = None
        self._stopped = threading.Event()

    def run(self) -> None:
        failed_at = returned_at = math.inf
        while not self._stopped.wait(1.0):
            now = time.monotonic()
            if failed_at == math.inf and self.error_dir and glob.glob(os.path.join(self.error_dir, "rank-*.json")):
                failed_at = now
            if returned_at == math.inf and self.error_dir and os.path.exists(os.path.join(self.error_dir, RESULTS)):
                returned_at = now
            if now > self.deadline:
                self.reason = "time_limit"
            elif now > failed_at + FAILED_RANK_GRACE_S:
                self.reason = "failed_rank"
            elif now > returned_at + LATE_END_GRACE_S:
                self.reason = "late_end"
            if self.reason:
                break
        # Again until the run has returned, in case its job had not started yet.
        while self.reason and not self._stopped.is_set():
            self.cancel()
            self._stopped.wait(5.0)

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    def guard(self, job: Callable[[], T], failure: Callable[[Exception, Optional[str]], Optional[Exception]]) -> T:
        """Runs ``job`` under watch. An exception it raises becomes ``failure(exc, reason)``, the
        job's one-line error (raised from it), or is raised again when that is None (a bug of the
        caller rather than a failed job)."""
        self.start()
        try:
            return job()
        except Exception as exc:  # noqa: BLE001 - turned into the job's one-line failure
            translated = failure(exc, self.reason)
            if translated is None:
                raise
            raise translated from exc
        finally:
            self.stop()


@contextlib.contextmanager
def errors_recorded(error_dir: str, rank: str, shutdown: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Runs the block; on an exception writes ``<error_dir>/rank-<rank>.json`` (its last line,
    whether it is an input error, whether it is one of the backend's ``shutdown`` errors: what
    a rank sees when another one failed) and re-raises."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - recorded, then raised again
        os.makedirs(error_dir, exist_ok=True)
        ours = isinstance(exc, (PipelineError, RunFailure))  # one-line messages already
        line = " ".join((str(exc) if ours else traceback.format_exception_only(type(exc), exc)[-1]).split())
        record = {"error": line, "input": isinstance(exc, PipelineError), "shutdown": isinstance(exc, shutdown)}
        tmp = os.path.join(error_dir, f".rank-{rank}.json")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, os.path.join(error_dir, f"rank-{rank}.json"))  # never read half-written
        raise


def write_results(error_dir: str, results: list) -> None:
    """Writes the ranks' ``results`` (by rank) as ``<error_dir>/RESULTS``, never half-written."""
    os.makedirs(error_dir, exist_ok=True)
    tmp = os.path.join(error_dir, f".{RESULTS}")
    with open(tmp, "wb") as fh:
        pickle.dump(results, fh)
    os.replace(tmp, os.path.join(error_dir, RESULTS))


def read_results(error_dir: str) -> list:
    """The ranks' results ``write_results`` wrote."""
    with open(os.path.join(error_dir, RESULTS), "rb") as fh:
        return pickle.load(fh)


def error_records(error_dir: Optional[str]) -> list[tuple[str, dict]]:
    """The ranks' error records (``rank-<r>``, record), by rank name."""
    records = []
    for name in sorted(glob.glob(os.path.join(error_dir, "rank-*.json"))) if error_dir else []:
        with open(name, encoding="utf-8") as fh:
            records.append((os.path.basename(name)[:-5], json.load(fh)))
    return records


def recorded_failure(records: Sequence[tuple[str, dict]]) -> Optional[Exception]:
    """The one-line error of the first rank that failed on its own (not of a shutdown); None
    when there is none."""
    own = [(rank, error) for rank, error in records if not error["shutdown"]]
    if not own:
        return None
    rank, error = own[0]
    kind = PipelineError if error["input"] else RunFailure
    return kind(f"training failed on {rank}: {error['error']}")


def job_failure(exc: Exception, error_dir: Optional[str], reason: Optional[str], time_limit_s: Optional[float],
                stall_seconds: Optional[int], shut_down_on: str) -> Optional[Exception]:
    """The one-line error a failed job raises, from the watchdog's ``reason`` and the ranks'
    records; None for an exception that is a bug of the caller.

    Args:
        shut_down_on: how the backend words a rank stopped by another rank's failure, e.g.
            ``"Horovod shut the job down on"`` (followed by the rank's name).
    """
    if reason == "time_limit":
        return time_limit_failure(time_limit_s)
    records = error_records(error_dir)
    own = recorded_failure(records)
    if own is not None:
        return own
    if records:
        rank, error = records[0]
        stall = f" longer than training.stall_seconds={stall_seconds}" if stall_seconds else ""
        return RunFailure(f"training failed: {shut_down_on} {rank} ({error['error']}): another "
                          f"rank crashed, or stalled{stall}")
    if isinstance(exc, RuntimeError):
        return RunFailure(f"training failed: {first_line(exc)}")
    return None


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its repr when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)

