"""pipeline train on generated samples: learning against the oracle, ESMM against the naive CVR
model on the entire space, artifacts, the registry, resume, and errors."""
import datetime as dt
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from pyspark.sql import functions as F

from pipeline.confload import to_dict
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.training.artifacts import load_artifact
from pipeline.training.dataset import batches, load_arrays, to_tensors
from pipeline.training.evaluate import predict
from pipeline.training.train import train_model

from tests.conftest import COMPILED_SPARK_SETTINGS
from tests.samples.conftest import built_world, make_cfg

# A small world (100 users, 60 items, CTR 0.2) so that seconds of training on 90k rows learn
# most of what the oracle knows; CVR 0.04 leaves the click-space CVR model ~700 conversions to
# learn from, and shared interest 0.9 gives ESMM something to carry from clicks to conversions.
# Selection bias 3 (click and conversion propensities strongly tied) makes the clicked exposures
# a biased sample of the entire space: the bias ESMM is built against.
WORLD = ["synth.days=8", "synth.exposures_per_day=45000", "synth.num_users=100", "synth.num_items=60",
         "synth.num_brands=40", "synth.ctr=0.2", "synth.cvr=0.04", "synth.shared_interest=0.9",
         "synth.selection_bias=3.0",
         "model.bottom_hidden=[64, 32]", "model.tower_hidden=[32]", "model.expert_hidden=[32]",
         "model.embedding_dim=16", "training.epochs=4", "training.batch_size=512", "training.learning_rate=0.01", "training.num_proc=1",
         *COMPILED_SPARK_SETTINGS]  # 360,000 exposures: compiled queries pay off (tests/conftest.py)
START, END = dt.date(2026, 10, 1), dt.date(2026, 10, 2)  # validation 10-03, test 10-04 (final)


@pytest.fixture(scope="module")
def world(spark, compiled_queries, tmp_path_factory):
    return built_world(spark, tmp_path_factory.mktemp("train"), WORLD, "2026-10-01", "2026-10-08")


@pytest.fixture(scope="module")
def esmm(spark, world):
    return train_model(spark, world, START, END, model_name="esmm", progress=False)


def test_esmm_learns_close_to_the_oracle(esmm):
    ctr = esmm.metrics["ctr"]
    # The oracle AUC (true pCTR as the score) is the best any model can reach on this day; half
    # of the true logit is a user x item latent-factor product, which 90k rows pin down only in
    # part: runs of this world measured gaps of 0.03 to 0.05. A model that learned nothing sits
    # at 0.5.
    assert ctr["auc"] > ctr["oracle_auc"] - 0.1, ctr
    assert 0.7 < ctr["calibration"] < 1.4
    assert esmm.metrics["ctcvr"]["auc"] > 0.65
    assert esmm.samples_per_second > 0 and esmm.report_days == (dt.date(2026, 10, 4),)


def test_esmm_beats_the_click_space_cvr_model_on_the_entire_space(spark, world, esmm):
    # Entire space: every exposure of the test day against the generator's would-convert labels.
    # Measured over training seeds 1-3 of this world: ESMM 0.873 / 0.882 / 0.883 against the
    # naive model's 0.846 / 0.850 / 0.852; the margin asked for is a third of the smallest gap
    # seen. With the default selection bias (1) the two were within 0.015 of each other either
    # way, seed by seed (docs/benchmarks.md).
    naive = train_model(spark, world, START, END, model_name="cvr_naive", progress=False)
    ours, baseline = esmm.metrics["cvr_entire_space"], naive.metrics["cvr_entire_space"]
    assert ours["auc"] > baseline["auc"] + 0.01, (ours, baseline)
    # The same samples, days and features: the training set esmm's run wrote, read again.
    assert naive.training_set_version == esmm.training_set_version


def test_artifact_and_registry(spark, world, esmm):
    row = delta.read_table(spark, world.table_path("models")).where(F.col("model_id") == esmm.model_id).first()
    assert row["model_type"] == "esmm" and row["artifact_uri"] == esmm.artifact_uri
    assert row["alias"] == "champion" and row["gate"].startswith("promoted to champion: no champion yet")
    assert row["training_set_version"] == esmm.training_set_version
    assert (row["train_start"], row["train_end"]) == (START, END)
    for name in ("weights.pt", "model.json", "encoders.json", "metrics.json", "history.json", "config.yaml"):
        assert os.path.exists(os.path.join(esmm.artifact_uri, name)), name

    loaded = load_artifact(esmm.artifact_uri)  # weights_only=True inside
    from pipeline.training.dataset import TrainingSet, split_dates

    split = split_dates(START, END, 1, 1)
    training_set = TrainingSet(path=world.table_path("training_set"), version=esmm.training_set_version,
                               split=split, encoders=loaded.encoders)
    arrays = load_arrays(spark, training_set, split.test)
    probs = predict(loaded.network, batches(to_tensors(arrays), 4096, shuffle=False))
    from pipeline.metrics import auc

    assert auc(arrays["click"], probs["p_ctr"]) == pytest.approx(esmm.metrics["ctr"]["auc"], abs=1e-9)
    np.testing.assert_allclose(probs["p_ctcvr"], probs["p_ctr"] * probs["p_cvr"], rtol=1e-6)


# A two-process run resumes a checkpoint of another backend, or of another number of processes
# (the fingerprint leaves both out; refusing another run's checkpoint: tests/training/test_faults.py).
# The Horovod run is the command a user runs, its output captured as Airflow or spark-submit capture
# it (no terminal); the TorchDistributor run is the same call in this process.
@pytest.mark.slow
@pytest.mark.parametrize("backend, stopped_num_proc, stopped_under, command",
                         [("horovod", 2, "torch_distributor", True), ("torch_distributor", 1, "torch_distributor", False)])
def test_a_run_stopped_after_its_first_checkpoint_resumes_on_two_processes_and_learns_like_one(
        spark, world, esmm, backend, stopped_num_proc, stopped_under, command, tmp_path):
    stopped = make_cfg(world.storage.root, *WORLD, f"training.backend={stopped_under}")
    with pytest.raises(PipelineError, match="stopped after epoch 1"):
        train_model(spark, stopped, START, END, model_name="esmm", num_proc=stopped_num_proc, progress=False,
                    stop_after_epoch=1)
    checkpoint = os.path.join(world.artifacts_path, "_checkpoints", "esmm-20261001-20261002", "checkpoint.pt")
    kept = torch.load(checkpoint, weights_only=True)
    assert kept["epoch"] == 1

    if command:
        conf = tmp_path / "conf.yaml"
        conf.write_text(yaml.safe_dump(to_dict(world), sort_keys=False))
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--conf", str(conf), "--model", "esmm",
                                 "--start", str(START), "--end", str(END), "--num-proc", "2",
                                 "--set", f"training.backend={backend}"],
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
        model_id = re.search(r"^train esmm \S+: (\S+),", result.stdout, re.M).group(1)
    else:
        model_id = train_model(spark, make_cfg(world.storage.root, *WORLD, f"training.backend={backend}"), START, END,
                               model_name="esmm", num_proc=2, progress=False).model_id
    row = delta.read_table(spark, world.table_path("models")).where(F.col("model_id") == model_id).first()
    assert f'"backend": "{backend}"' in row["params"] and '"num_proc": 2' in row["params"] and row["mlflow_version"] >= 1
    assert load_artifact(row["artifact_uri"]).name == "esmm"
    # Resumed: the first epoch is the stopped run's, and the checkpoint is gone once finished.
    with open(os.path.join(row["artifact_uri"], "history.json"), encoding="utf-8") as fh:
        history = json.load(fh)
    assert [h["seconds"] for h in history[:len(kept["history"])]] == [h["seconds"] for h in kept["history"]]
    assert not os.path.exists(checkpoint)
    # Two ranks see the same rows in another order, in steps of two batches at twice the learning
    # rate: the same model up to the noise of SGD, which moves the AUC by about 0.01 between seeds.
    two = json.loads(row["metrics"])
    for task in ("ctr", "ctcvr"):
        assert abs(two[task]["auc"] - esmm.metrics[task]["auc"]) < 0.03, (task, two, esmm.metrics)
    if command:
        # Logs: timestamped records, progress as whole lines (no carriage returns), the ranks' epochs.
        log = result.stdout + result.stderr
        assert "\r" not in log
        assert re.search(r"^\S*\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO pipeline\.training\.train: training esmm", log, re.M), log[-3000:]
        assert re.search(r"epoch 2/\d+: \d+/\d+ batches \(100%\) in", log), log[-3000:]


def test_training_needs_final_partitions(spark, world):
    with pytest.raises(PipelineError, match="samples for 2026-10-05 are not final yet"):
        train_model(spark, world, dt.date(2026, 10, 1), dt.date(2026, 10, 3), progress=False)
    with pytest.raises(PipelineError, match="no samples for 2026-10-09"):
        train_model(spark, make_cfg(world.storage.root, *WORLD, "training.final_only=false"),
                    dt.date(2026, 10, 6), dt.date(2026, 10, 7), progress=False)
