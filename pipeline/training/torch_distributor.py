"""Spark's TorchDistributor: the one module that calls it and ``torch.distributed``.

``run_with_torch_distributor`` starts ``num_proc`` processes with
``pyspark.ml.torch.distributor.TorchDistributor``: the tasks of one Spark barrier job, each
launching ``torchrun`` for one process (``local_mode=False``), so the same job runs in
``local[N]`` and on a cluster, and cancelling its Spark job ends its processes. The processes join
a ``torch.distributed`` process group over gloo (NCCL for CUDA tensors when there are GPUs).
Functions handed to it run in those processes: they must be top-level (picklable) and import
heavy libraries inside.

``TorchRanks`` is the training loop's ``Ranks`` interface (``pipeline.training.ranks``) over that
group, with the semantics of ``HorovodRanks``: each rank reads its own shard once per epoch;
gradients are averaged over the ranks at every step (one allreduce per optimizer, divided by the
number of ranks); a rank out of batches shadows the others' steps with zeros until they finish
(``torch.distributed.algorithms.Join``), so uneven shards never deadlock. Unlike Horovod's join,
the ranks then take the weights and optimizer states of a rank that stepped to the end, so the
epoch's last steps are never lost.

A job is bounded and fails in one line as with Horovod (``ranks.Watchdog``, the error records):
its Spark job is cancelled past ``training.time_limit_minutes``, or ``FAILED_RANK_GRACE_S`` after
a rank failed; ``training.stall_seconds`` is the process group's timeout, so a rank waiting that
long for the others in a collective fails (``PeerLost``) instead of waiting for the time limit.

A job also ends on time once its ranks are done: rank 0 writes every rank's results into the
error folder (``ranks.RESULTS``); torchrun's agents can then still wait up to 300 s on their exit
barrier before the Spark job ends (seen in about one test run in five here), so a job not ended
``LATE_END_GRACE_S`` after the results were written is cancelled and returns them.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import uuid
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.join import Join, Joinable, JoinHook

from pipeline.errors import RunFailure
from pipeline.training import ranks
from pipeline.training.ranks import (RESULTS, SingleProcess, Watchdog, errors_recorded, first_line, job_failure,
                                     read_results, write_results)

log = logging.getLogger(__name__)


class PeerLost(RuntimeError):
    """A collective failed: another rank crashed, or stalled past the process group's timeout."""


@contextlib.contextmanager
def _collective() -> Iterator[None]:
    """Runs collectives; their failure is a ``PeerLost`` (gloo raises a bare ``RuntimeError``:
    "Connection closed by peer", "Timed out waiting ...")."""
    try:
        yield
    except PeerLost:
        raise
    except RuntimeError as exc:
        raise PeerLost(first_line(exc)) from exc


class TorchRanks(SingleProcess):
    """The ``torch.distributed`` process group of a ``run_with_torch_distributor`` process."""

    def __init__(self) -> None:
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self._optimizers: list[_AveragedOptimizer] = []
        self._epoch: Optional[Join] = None

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        names = sorted(values)
        tensor = torch.tensor([float(values[n]) for n in names], dtype=torch.float64)
        with _collective():
            dist.all_reduce(tensor)
        return dict(zip(names, tensor.tolist()))

    def distributed(self, optimizer: torch.optim.Optimizer, *modules: nn.Module) -> "_AveragedOptimizer":
        averaged = _AveragedOptimizer(optimizer, self.size)
        self._optimizers.append(averaged)
        return averaged

    def sync(self, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Gives every rank rank 0's weights and optimizer states, then starts an epoch: until
        ``join``, a rank out of batches shadows the others' steps."""
        with _collective():
            for module in modules:
                _broadcast_tensors(module.state_dict().values(), source=0)
            for optimizer in optimizers:
                _broadcast_state(optimizer, source=0)
        if self._optimizers:
            # Join is a context manager around one rank's batches; the loop marks its two ends
            # with sync and join, so it is entered here and left in join.
            self._epoch = Join(self._optimizers)
            self._epoch.__enter__()

    def join(self) -> None:
        """Shadows the others' steps until every rank is out of batches (``Join``'s exit)."""
        epoch, self._epoch = self._epoch, None
        if epoch is not None:
            with _collective():
                epoch.__exit__(None, None, None)


class _AveragedOptimizer(Joinable):
    """``optimizer`` whose ``step`` first averages the gradients over the ranks (one allreduce
    of them all; a parameter without a gradient counts as zeros, as in Horovod). As a
    ``Joinable`` it tells ``Join`` at every step that this rank has not run out of batches."""

    def __init__(self, optimizer: torch.optim.Optimizer, size: int) -> None:
        super().__init__()
        self.optimizer, self.size = optimizer, size
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        with _collective():
            Join.notify_join_context(self)  # still stepping (the first joinable tells for all)
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                              for p in self.params])  # [all parameters' elements]
            dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for p in self.params:
            p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
        self.optimizer.step()

    def join_hook(self, **kwargs: Any) -> JoinHook:
        return _ShadowSteps(self)

    @property
    def join_device(self) -> torch.device:
        return self.params[0].device

    @property
    def join_process_group(self) -> Any:
        return dist.group.WORLD


class _ShadowSteps(JoinHook):
    """What a rank out of batches does while the others step: their gradient allreduce, with
    zeros; at the end, everyone takes the weights and state of a rank that stepped to the end."""

    def __init__(self, optimizer: _AveragedOptimizer) -> None:
        self.optimizer = optimizer
        self.elements = sum(p.numel() for p in optimizer.params)

    def main_hook(self) -> None:
        dist.all_reduce(torch.zeros(self.elements, dtype=self.optimizer.params[0].dtype,
                                    device=self.optimizer.join_device))

    def post_hook(self, is_last_joiner: bool) -> None:
        # [a last joiner's rank (max over ranks), whether some rank joined early]
        flags = torch.tensor([dist.get_rank() if is_last_joiner else -1, 0 if is_last_joiner else 1])
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        source, uneven = int(flags[0]), bool(flags[1])
        if uneven:
            _broadcast_tensors([p.data for p in self.optimizer.params], source=source)
            _broadcast_state(self.optimizer, source=source)


def _broadcast_tensors(tensors: Any, source: int) -> None:
    """Overwrites ``tensors`` in place with rank ``source``'s."""
    for tensor in tensors:
        dist.broadcast(tensor, src=source)


def _broadcast_state(optimizer: Any, source: int) -> None:
    """Gives ``optimizer`` rank ``source``'s state (step counts, moments) on every rank."""
    state = [optimizer.state_dict() if dist.get_rank() == source else None]
    dist.broadcast_object_list(state, src=source)
    if dist.get_rank() != source:
        optimizer.load_state_dict(state[0])


def run_with_torch_distributor(fn: Callable[..., Any], *, num_proc: int, args: Sequence[Any] = (),
                               kwargs: Optional[dict] = None, error_dir: Optional[str] = None,
                               time_limit_s: Optional[float] = None,
                               stall_seconds: Optional[int] = None) -> list[Any]:
    """Runs ``fn(*args, **kwargs)`` in ``num_proc`` processes of one process group, started by
    TorchDistributor on the active Spark session. The arguments are ``run_on_spark``'s.

    Args:
        fn: a top-level function; ``TorchRanks()`` inside it is its process group.
        num_proc: processes (Spark tasks of one barrier job); at most the free task slots.
        args, kwargs: its arguments (pickled to the processes).
        error_dir: a folder every process can write; see ``run_on_spark``. Rank 0 also writes the
            results there, so that a job whose ranks returned ends on time (without it, the run
            returns when TorchDistributor does).
        time_limit_s: wall-clock seconds the whole job may take; past them it is cancelled.
        stall_seconds: the process group's timeout: a rank that waits this long for the others in
            a collective fails. None: torch's default (30 minutes for gloo).

    Returns:
        The return values of ``fn``, ordered by rank.

    Raises:
        PipelineError: a rank raised a ``PipelineError`` (named with its rank).
        RunFailure: a rank failed otherwise, the job could not start, or the time limit passed.
    """
    from pyspark import SparkContext, cloudpickle
    from pyspark.ml.torch.distributor import TorchDistributor

    # fn and its arguments travel as bytes, unpickled once the rank has the driver's import path:
    # torchrun starts each rank from a temporary script, whose path lacks the driver's folders.
    payload = cloudpickle.dumps((fn, tuple(args), kwargs or {}))
    context = SparkContext._active_spark_context
    tag = f"torch_distributor-{uuid.uuid4().hex[:8]}"
    watchdog = Watchdog(tag, lambda: context.cancelJobsWithTag(tag), time_limit_s, error_dir)
    # TorchDistributor: one Spark task per process, torchrun for one process in each (the
    # executors' path, also in local[N]); GPUs when Spark gives the tasks some.
    distributor = TorchDistributor(num_processes=num_proc, local_mode=False, use_gpu=_tasks_have_gpus(context))
    if error_dir:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(error_dir, RESULTS))  # an earlier run's

    def job() -> list[Any]:
        try:
            return distributor.run(_run_rank, payload, list(sys.path), error_dir, stall_seconds)
        except Exception:
            if watchdog.reason != "late_end":
                raise
            log.warning("the ranks returned, but TorchDistributor's job had not ended %.0f s later "
                        "(torchrun's exit barrier): cancelled it", ranks.LATE_END_GRACE_S)
            return read_results(error_dir)

    context.addJobTag(tag)  # this thread's jobs from here on: the run's barrier job
    try:
        return watchdog.guard(job, lambda exc, reason: _job_failure(exc, error_dir, reason, time_limit_s, stall_seconds))
    finally:
        context.removeJobTag(tag)


def _tasks_have_gpus(context: Any) -> bool:
    """Whether Spark gives each task a GPU (``spark.task.resource.gpu.amount``)."""
    return float(context.getConf().get("spark.task.resource.gpu.amount", "0")) >= 1


def _run_rank(payload: bytes, driver_path: list[str], error_dir: Optional[str],
              stall_seconds: Optional[int]) -> list[Any]:
    """One process of the job (started by torchrun, which sets ``RANK``, ``WORLD_SIZE`` and the
    rendezvous): joins the process group, calls the pickled ``(fn, args, kwargs)`` with its
    errors recorded, and returns every rank's result (TorchDistributor hands back rank 0's
    return value). ``driver_path`` (the driver's ``sys.path``) is appended to the rank's own, so
    that ``fn`` unpickles wherever the driver could import it from."""
    from pyspark import cloudpickle

    rank = os.environ.get("RANK", "unknown")
    recorded = errors_recorded(error_dir, rank, shutdown=(PeerLost,)) if error_dir else contextlib.nullcontext()
    with recorded:
        sys.path.extend(entry for entry in driver_path if entry not in sys.path)
        fn, args, kwargs = cloudpickle.loads(payload)
        timeout = {"timeout": dt.timedelta(seconds=stall_seconds)} if stall_seconds else {}
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo", **timeout)
        try:
            result = fn(*args, **kwargs)
            results = [None] * dist.get_world_size()
            with _collective():
                dist.all_gather_object(results, result)
            if error_dir and dist.get_rank() == 0:
                write_results(error_dir, results)  # every rank returned: the job is done
            return results
        finally:
            dist.destroy_process_group()


def _job_failure(exc: Exception, error_dir: Optional[str], reason: Optional[str], time_limit_s: Optional[float],
                 stall_seconds: Optional[int]) -> Optional[Exception]:
    """The one-line error a failed job raises (``ranks.job_failure``, and a failed Spark job's
    own message); None for an exception that is a bug of the caller (raised before the Spark job
    ran, e.g. an argument that does not pickle)."""
    failure = job_failure(exc, error_dir, reason, time_limit_s, stall_seconds, "the process group broke on")
    java = getattr(exc, "java_exception", None)  # the Spark job failed (Py4JJavaError)
    if failure is None and java is not None:
        return RunFailure(f"training failed: {(str(java.getMessage()).strip() or repr(exc)).splitlines()[0]}")
    return failure
