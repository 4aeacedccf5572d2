"""Training that fails instead of hanging, registering garbage or resuming another run's
checkpoint: NaN losses, the time limit (one process, and a hung rank of each backend), checkpoint
fingerprints."""
import dataclasses
import json
import os
import time

import psutil
import pytest
import torch

from pipeline.config import TrainingConf
from pipeline.errors import PipelineError, RunFailure
from pipeline.io import delta
from pipeline.models.base import output_priors
from pipeline.training.backends import BACKENDS
from pipeline.training.distributed import _job_failure
from pipeline.training.loop import CHECKPOINT
from pipeline.training.process import train_in_memory
from pipeline.training.train import train_model

from tests.models.conftest import INPUTS, small_spec, toy_data
from tests.samples.conftest import built_world, make_cfg
from tests.training.test_train import END, START, WORLD

PRIORS = output_priors(0.3, 0.1)
CONF = TrainingConf(epochs=2, batch_size=100, patience=5, deep_epochs=None)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models: a second thread only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy():
    return toy_data(rows=1000, seed=7), toy_data(rows=300, seed=8)


@pytest.mark.parametrize("name", ["ctr_dnn", "esmm"])  # a loss of logits; one of a product of probabilities
def test_a_non_finite_training_loss_fails_the_run(toy, name):
    train, validation = toy
    broken = {**train, "num": train["num"].clone()}
    broken["num"][500, 0] = float("inf")
    with pytest.raises(RunFailure, match=r"^training loss (\w+ is (nan|inf)|is nan \(output \w+ is not finite\)) "
                                         r"at epoch 1, step \d+: lower training.learning_rate or check the inputs$"):
        train_in_memory(small_spec(name), INPUTS, PRIORS, CONF, broken, validation)


def test_the_time_limit_stops_one_process(toy):
    train, validation = toy
    started = time.monotonic()
    with pytest.raises(RunFailure, match=r"^training exceeded training.time_limit_minutes=0.0005$"):
        train_in_memory(small_spec(), INPUTS, PRIORS, dataclasses.replace(CONF, epochs=1000), train, validation,
                        time_limit_s=0.03)
    assert time.monotonic() - started < 10


def test_a_checkpoint_resumes_only_the_run_it_fingerprints(toy, tmp_path, pipeline_log):
    train, validation = toy
    spec, run = small_spec(), {"checkpoint_dir": str(tmp_path), "fingerprint": "run-a"}
    train_in_memory(spec, INPUTS, PRIORS, CONF, train, validation, stop_after_epoch=1, **run)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert saved["fingerprint"] == "run-a" and saved["epoch"] == 1

    # Another run (here a wider embedding: its weights would not even load) starts fresh.
    wider = dataclasses.replace(spec, embedding_dim=16)
    _, fresh = train_in_memory(wider, INPUTS, PRIORS, CONF, train, validation, stop_after_epoch=1,
                               checkpoint_dir=str(tmp_path), fingerprint="run-b")
    assert (f"ignoring checkpoint of another run (conf or training set changed): {tmp_path / CHECKPOINT}"
            in pipeline_log.messages)
    assert fresh.epochs_run == 1 and fresh.history[0]["seconds"] != saved["history"][0]["seconds"]

    # The same run resumes from its epoch: its first validations are the checkpoint's own.
    train_in_memory(spec, INPUTS, PRIORS, CONF, train, validation, stop_after_epoch=1, **run)
    pipeline_log.clear()  # its own checkpoint was run-b's: ignored
    kept = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    _, resumed = train_in_memory(spec, INPUTS, PRIORS, CONF, train, validation, **run)
    assert not [m for m in pipeline_log.messages if "ignoring" in m]
    assert resumed.epochs_run == 2 and resumed.history[:len(kept["history"])] == kept["history"]


def test_a_non_finite_validation_score_is_never_the_best(toy):
    train, validation = toy
    broken = {**validation, "num": validation["num"].clone()}
    broken["num"][0, 1] = float("nan")
    model, result = train_in_memory(small_spec("ctr_dnn"), INPUTS, PRIORS, dataclasses.replace(CONF, patience=0),
                                    train, broken)
    assert all(row["score"] != row["score"] for row in result.history)  # NaN, every one
    assert result.best_epoch == 0.0 and result.epochs_run == 1  # stopped; the initial weights kept


# --- through train_model: a small world (the training world of test_train.py, fewer exposures)

SMALL_WORLD = [*WORLD, "synth.exposures_per_day=4000", "training.epochs=2", "training.patience=5",
               "model.name=shared_bottom"]


@pytest.fixture(scope="module")
def small_world(spark, tmp_path_factory):
    return built_world(spark, tmp_path_factory.mktemp("faults"), SMALL_WORLD, "2026-10-01", "2026-10-08")


def test_a_run_whose_loss_goes_nan_registers_nothing(spark, small_world):
    cfg = make_cfg(small_world.storage.root, *SMALL_WORLD, "training.learning_rate=1.0e+30",
                   "training.embedding_learning_rate=1.0e+30")
    models = small_world.table_path("models")
    before = delta.read_table(spark, models).count() if os.path.exists(models) else 0
    with pytest.raises(RunFailure, match=r"^training loss .* at epoch 1, step \d+: lower training.learning_rate"):
        train_model(spark, cfg, START, END, num_proc=1, progress=False)
    after = delta.read_table(spark, models).count() if os.path.exists(models) else 0
    assert after == before


def test_train_model_resumes_only_its_own_checkpoint_to_the_same_weights(spark, small_world, pipeline_log):
    checkpoint = os.path.join(small_world.artifacts_path, "_checkpoints", "shared_bottom-20261001-20261002",
                              CHECKPOINT)
    with pytest.raises(PipelineError, match="stopped after epoch 1"):
        train_model(spark, small_world, START, END, num_proc=1, progress=False, stop_after_epoch=1)
    narrower = make_cfg(small_world.storage.root, *SMALL_WORLD, "model.embedding_dim=8")
    with pytest.raises(PipelineError, match="stopped after epoch 1"):
        train_model(spark, narrower, START, END, num_proc=1, progress=False, stop_after_epoch=1)
    assert f"ignoring checkpoint of another run (conf or training set changed): {checkpoint}" in pipeline_log.messages
    pipeline_log.clear()
    kept = torch.load(checkpoint, weights_only=True)["history"]

    # The same conf again (the training set its first run wrote, reused) resumes, to the weights
    # of a run never interrupted.
    resumed = train_model(spark, narrower, START, END, num_proc=1, progress=False)
    assert not [m for m in pipeline_log.messages if "ignoring" in m]
    with open(os.path.join(resumed.artifact_uri, "history.json"), encoding="utf-8") as fh:
        history = json.load(fh)
    assert resumed.epochs_run == 2 and not os.path.exists(checkpoint)
    assert [h["seconds"] for h in history[:len(kept)]] == [h["seconds"] for h in kept]
    straight = train_model(spark, narrower, START, END, num_proc=1, progress=False)
    a, b = (torch.load(os.path.join(run.artifact_uri, "weights.pt"), weights_only=True) for run in (resumed, straight))
    assert a.keys() == b.keys() and straight.epochs_run == 2
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- a hung rank

def hang_on_rank_one(backend: str, pid_dir: str) -> None:
    ranks = BACKENDS[backend].ranks()
    with open(os.path.join(pid_dir, f"rank-{ranks.rank}.pid"), "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    if ranks.rank == 1:
        time.sleep(3600)  # a rank stuck for good (a dead mount, a deadlock)
    ranks.sum({"x": 1.0})  # rank 0 waits here for its peer


def _ranks_alive(pid_dir) -> list[int]:
    """The rank processes (their pids left in ``pid_dir``) that still run."""
    alive = []
    for name in os.listdir(pid_dir):
        try:
            if psutil.Process(int((pid_dir / name).read_text())).status() != psutil.STATUS_ZOMBIE:
                alive.append(name)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("backend, limit", [("horovod", 24.0), ("torch_distributor", 36.0)])
def test_a_hung_rank_fails_the_job_at_the_time_limit(spark, tmp_path, backend, limit):
    # (TorchDistributor's ranks take longer to start: both ranks run before the limit.)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    started = time.monotonic()
    with pytest.raises(RunFailure, match=rf"^training exceeded training.time_limit_minutes={limit / 60:g}$"):
        BACKENDS[backend].run(hang_on_rank_one, num_proc=2, args=(backend, str(pid_dir)),
                              error_dir=str(tmp_path / "errors"), time_limit_s=limit, stall_seconds=600)
    assert time.monotonic() - started < limit + 30
    assert sorted(os.listdir(pid_dir)) == ["rank-0.pid", "rank-1.pid"]  # both ranks ran
    # Nothing left behind for the next tests of the session: no Spark job, no rank process.
    def left() -> tuple[list, list]:
        return spark.sparkContext.statusTracker().getActiveJobsIds(), _ranks_alive(pid_dir)

    deadline = time.monotonic() + 30
    while any(left()) and time.monotonic() < deadline:
        time.sleep(1)
    assert left() == ([], [])


def test_a_rank_input_error_stays_an_input_error(tmp_path):
    # What run_on_spark raises from the records its ranks leave (_record_errors writes them).
    def failure(**records):
        for rank, record in records.items():
            (tmp_path / f"{rank}.json").write_text(json.dumps(record))
        return _job_failure(RuntimeError("Horovod detected that one or more processes exited\nwith non-zero status"),
                            str(tmp_path), None, None, 60)

    error = failure(**{"rank-0": {"error": "Horovod has been shut down", "input": False, "shutdown": True}})
    assert isinstance(error, RunFailure) and "training.stall_seconds=60" in str(error)
    error = failure(**{"rank-1": {"error": "no rows in shard 1", "input": True, "shutdown": False}})
    assert isinstance(error, PipelineError) and str(error) == "training failed on rank-1: no rows in shard 1"


def test_the_watchdog_turns_a_failed_job_into_its_one_line_error():
    from pipeline.training.ranks import Watchdog

    def crash():
        raise RuntimeError("rank 1 lost")

    def watchdog():
        return Watchdog("job", lambda: None, time_limit_s=60, error_dir=None)

    assert watchdog().guard(lambda: 42, lambda exc, reason: None) == 42
    guard = watchdog()
    with pytest.raises(RunFailure, match=r"^training failed: rank 1 lost$") as raised:
        guard.guard(crash, lambda exc, reason: RunFailure(f"training failed: {exc}"))
    assert isinstance(raised.value.__cause__, RuntimeError) and not guard.is_alive()
    with pytest.raises(RuntimeError, match="rank 1 lost"):  # not a failed job: a bug of the caller
        watchdog().guard(crash, lambda exc, reason: None)
