"""The training backends with 2 processes on local Spark: a failing rank failing the job with its
error in one line, and a job ending once its ranks returned. The ranks' collectives (sums, gradient
averaging, uneven ends: ``probe``) run in the job of tests/data/test_reader.py that reads every row
once; learning like one process, resume: test_train.py; a hung rank and the time limit:
test_faults.py."""
import os
import signal
import subprocess
import sys
import typing

import pytest
import torch

from pipeline.config import TrainingConf, load_config
from pipeline.errors import RunFailure
from pipeline.training import ranks as ranks_module
from pipeline.training.backends import BACKENDS


def test_the_conf_names_the_backends_there_are():
    assert set(typing.get_args(typing.get_type_hints(TrainingConf)["backend"])) == set(BACKENDS)
    assert TrainingConf().backend == "horovod"
    assert load_config(None, ["training.backend=torch_distributor"]).training.backend == "torch_distributor"


def test_horovod_torch_imports_with_gloo():
    result = subprocess.run([sys.executable, "-c", "import horovod.torch as hvd; print(hvd.gloo_built())"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def probe(backend: str) -> dict:
    """One rank: a sum over the ranks, then ``rank + 1`` steps of plain SGD (lr 1) on
    ``loss = w * (rank + 1)`` from ``w = 0``, through the loop's calls (distributed, sync, step, join)."""
    ranks = BACKENDS[backend].ranks()
    total = ranks.sum({"value": float(ranks.rank + 1)})
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = ranks.distributed(torch.optim.SGD(model.parameters(), lr=1.0), model)
    ranks.sync([model], [optimizer])
    for _ in range(ranks.rank + 1):  # rank 1 steps twice, rank 0 once: uneven shards
        optimizer.zero_grad()
        (model.weight.sum() * (ranks.rank + 1)).backward()
        optimizer.step()
    ranks.join()
    return {"rank": ranks.rank, "size": ranks.size, "sum": total["value"], "weight": model.weight.item()}


def check_probe(results: list[dict]) -> None:
    """What ``probe`` returned on two ranks (run in the job of tests/data/test_reader.py's
    ``test_ranks_read_every_row_once``: one two-process job per backend for both)."""
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["size"] == 2 and r["sum"] == 3.0 for r in results)
    # Step 1 averages gradients 1 and 2: w = -1.5. Step 2 is rank 1's alone; rank 0, out of
    # batches, adds zeros and the sum is still divided by 2 ranks: w = -1.5 - 2 / 2 = -2.5.
    # Then every rank takes the weights of the rank that stepped to the end, rank 0 included
    # (which validates and checkpoints them).
    assert [r["weight"] for r in results] == [-2.5, -2.5]


def fail_on_rank_one(backend: str) -> None:
    ranks = BACKENDS[backend].ranks()
    if ranks.rank == 1:
        raise ValueError("rank 1 cannot read its shard")
    ranks.sum({"x": 1.0})  # rank 0 waits here for a peer that is gone


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_rank_fails_the_job_with_its_error(spark, tmp_path, backend):
    # A rank's error is a failed run (exit status 1); only a PipelineError it raises stays one.
    with pytest.raises(RunFailure, match="^training failed on rank-1: ValueError: rank 1 cannot read its shard$"):
        BACKENDS[backend].run(fail_on_rank_one, num_proc=2, args=(backend,), error_dir=str(tmp_path))


def return_and_hold_the_launcher(backend: str, folder: str) -> int:
    """One rank: returns its rank at once; rank 0 first starts a process that keeps its torchrun's
    output open, so that its Spark task does not end after the ranks returned, as when torchrun's
    agents wait on their exit barrier. The holder's pid is written to ``folder/holder.pid``."""
    ranks = BACKENDS[backend].ranks()
    if ranks.rank == 0:
        holder = subprocess.Popen(["sleep", "900"], start_new_session=True)
        with open(os.path.join(folder, "holder.pid"), "w", encoding="utf-8") as fh:
            fh.write(str(holder.pid))
    return ranks.rank


def test_a_job_whose_ranks_returned_ends_though_its_launcher_has_not(spark, tmp_path, monkeypatch, pipeline_log):
    monkeypatch.setattr(ranks_module, "LATE_END_GRACE_S", 3.0)
    errors = tmp_path / "errors"
    try:
        # Without the watchdog's late end, the time limit would fail the run.
        results = BACKENDS["torch_distributor"].run(return_and_hold_the_launcher, num_proc=2,
                                                    args=("torch_distributor", str(tmp_path)),
                                                    error_dir=str(errors), time_limit_s=150)
    finally:
        if (tmp_path / "holder.pid").exists():
            os.kill(int((tmp_path / "holder.pid").read_text()), signal.SIGKILL)
    assert results == [0, 1]
    assert "TorchDistributor's job had not ended 3 s later (torchrun's exit barrier): cancelled it" in pipeline_log.text
