import subprocess
import sys

from pipeline.training.distributed import allreduce_probe, run_on_spark


def test_horovod_torch_imports_with_gloo():
    result = subprocess.run([sys.executable, "-c", "import horovod.torch as hvd; print(hvd.gloo_built())"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_two_process_allreduce_on_spark(spark):
    results = run_on_spark(allreduce_probe, num_proc=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["size"] == 2 and r["sum"] == 3.0 for r in results)
