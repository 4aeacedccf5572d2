import subprocess
import sys

import pytest

from pipeline.errors import RunFailure
from pipeline.training.distributed import HorovodRanks, allreduce_probe, run_on_spark


def test_horovod_torch_imports_with_gloo():
    result = subprocess.run([sys.executable, "-c", "import horovod.torch as hvd; print(hvd.gloo_built())"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_two_process_allreduce_on_spark(spark):
    results = run_on_spark(allreduce_probe, num_proc=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["size"] == 2 and r["sum"] == 3.0 for r in results)


def fail_on_rank_one() -> None:
    ranks = HorovodRanks()
    if ranks.rank == 1:
        raise ValueError("rank 1 cannot read its shard")
    ranks.sum({"x": 1.0})  # rank 0 waits here for a peer that is gone


def test_a_failing_rank_fails_the_job_with_its_error(spark, tmp_path):
    # A rank's error is a failed run (exit status 1); only a PipelineError it raises stays one.
    with pytest.raises(RunFailure, match="^training failed on rank-1: ValueError: rank 1 cannot read its shard$"):
        run_on_spark(fail_on_rank_one, num_proc=2, error_dir=str(tmp_path))
