"""Horovod on Spark: the one module that calls Horovod.

``run_on_spark`` starts ``num_proc`` Horovod processes as Spark tasks (gloo controller, no MPI),
so the same job runs in ``local[N]`` and on a cluster. Functions handed to it run in those tasks:
they must be top-level (picklable) and import heavy libraries inside.

``Ranks`` is what the training loop needs from the process group; ``SingleProcess`` stands in
for it when one process trains, so the loop has no Horovod branches.
"""
from __future__ import annotations

import glob
import os
import traceback
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from pipeline.errors import PipelineError


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
                 start_timeout: int = 300) -> list[Any]:
    """Runs ``fn(*args, **kwargs)`` in ``num_proc`` Horovod processes on the active Spark session.

    Args:
        fn: a top-level function.
        num_proc: processes (Spark tasks); at most the cluster's free task slots.
        args, kwargs: its arguments (pickled to the tasks).
        error_dir: a folder every task can write (shared storage on a cluster); a rank that
            raises leaves its error there, so the job fails with that error, not a generic one.
        start_timeout: seconds to wait for the tasks to start.

    Returns:
        The return values of ``fn``, ordered by Horovod rank.

    Raises:
        PipelineError: naming the first rank's error when a rank failed.
    """
    import horovod.spark

    guarded = (_record_errors, (fn, error_dir, *args)) if error_dir else (fn, tuple(args))
    try:
        # Horovod: gloo controller (no MPI needed on executors).
        return horovod.spark.run(guarded[0], args=tuple(guarded[1]), kwargs=kwargs or {}, num_proc=num_proc,
                                 start_timeout=start_timeout, use_gloo=True, verbose=0)
    except RuntimeError as exc:
        errors = sorted(glob.glob(os.path.join(error_dir, "rank-*.txt"))) if error_dir else []
        if not errors:
            raise
        with open(errors[0], encoding="utf-8") as fh:
            raise PipelineError(f"training failed on {os.path.basename(errors[0])[:-4]}: {fh.read().strip()}") from exc


def _record_errors(fn: Callable[..., Any], error_dir: str, *args: Any, **kwargs: Any) -> Any:
    """Calls ``fn``; on an exception writes ``rank-<r>.txt`` (its last line) and re-raises.

    Horovod's own shutdown error is not recorded: it is what the other ranks see when one fails.
    """
    from horovod.common.exceptions import HorovodInternalError

    try:
        return fn(*args, **kwargs)
    except HorovodInternalError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then raised again
        os.makedirs(error_dir, exist_ok=True)
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
        rank = os.environ.get("HOROVOD_RANK", "unknown")  # Horovod: set in every task it starts
        with open(os.path.join(error_dir, f"rank-{rank}.txt"), "w", encoding="utf-8") as fh:
            fh.write(line)
        raise


def allreduce_probe() -> dict[str, float]:
    """Checks that the ranks can talk: each contributes ``rank + 1`` to a sum allreduce."""
    ranks = HorovodRanks()
    total = ranks.sum({"value": float(ranks.rank + 1)})
    return {"rank": ranks.rank, "size": ranks.size, "sum": total["value"]}
