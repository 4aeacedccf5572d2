"""The training backends with 2 processes on local Spark: the ranks' collectives (sums, gradient
averaging, uneven ends), and a failing rank failing the job with its error in one line. Reading
every row once, learning like one process, resume: tests/data/test_reader.py and test_train.py;
a hung rank and the time limit: test_faults.py."""
import subprocess
import sys
import typing

import pytest
import torch

from pipeline.config import TrainingConf, load_config
from pipeline.errors import RunFailure
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_sum_average_and_end_uneven_shards_together(spark, backend):
    results = BACKENDS[backend].run(probe, num_proc=2, args=(backend,))
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
