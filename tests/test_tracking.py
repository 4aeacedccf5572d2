"""pipeline/tracking.py on its own: the store a conf names, and what a run logs, from hand-made
values (the runs, versions and the champion alias of real trainings: tests/test_registry.py)."""
import os

import pytest

from pipeline import tracking
from pipeline.config import load_config
from pipeline.errors import ConfigError, PipelineError


def test_the_default_store_is_a_sqlite_file_under_storage_root(tmp_path):
    found = tracking.store(load_config(None, [f"storage.root={tmp_path}/data"]))
    assert found.tracking_uri == found.registry_uri == f"sqlite:///{tmp_path}/data/mlflow.db"
    assert found.artifact_location == f"{tmp_path}/data/mlflow-artifacts"
    assert (found.experiment, found.model_name) == ("mtrank", "mtrank")
    relative = tracking.store(load_config(None, ["storage.root=./data"]))
    assert relative.tracking_uri == f"sqlite:///{os.path.abspath('data')}/mlflow.db"  # sqlite:////abs/...
    assert "mlflow ui --backend-store-uri sqlite:////" in tracking.ui_command(load_config(None, ["storage.root=data"]))


def test_any_tracking_uri_by_conf():
    server = load_config(None, ["storage.root=s3://bucket/mtrank", "mlflow.tracking_uri=http://mlflow:5000",
                                "mlflow.experiment=/Shared/ranking", "mlflow.registered_model=ranker"])
    found = tracking.store(server)
    assert (found.tracking_uri, found.registry_uri) == ("http://mlflow:5000", "http://mlflow:5000")
    assert found.artifact_location is None  # the server decides
    assert tracking.model_uri(server) == "models:/ranker@champion"
    assert tracking.ui_command(server) == "MLflow runs and models: http://mlflow:5000, experiment /Shared/ranking"
    uc = tracking.store(load_config(None, ["mlflow.tracking_uri=databricks", "mlflow.registry_uri=databricks-uc"]))
    assert (uc.tracking_uri, uc.registry_uri) == ("databricks", "databricks-uc")
    # Another SQLite file: artifacts still beside the tables.
    other = tracking.store(load_config(None, ["storage.root=/srv/data", "mlflow.tracking_uri=sqlite:////srv/m.db"]))
    assert other.artifact_location == "/srv/data/mlflow-artifacts"


def test_a_remote_storage_root_needs_a_tracking_uri():
    cfg = load_config(None, ["storage.root=s3://bucket/mtrank"])
    with pytest.raises(PipelineError, match=r"^mlflow\.tracking_uri: storage\.root s3://bucket/mtrank is not a "
                                            r"local folder") as err:
        tracking.store(cfg)
    assert "\n" not in str(err.value) and tracking.ui_command(cfg).startswith("MLflow: mlflow.tracking_uri: ")
    with pytest.raises(ConfigError, match=r"mlflow\.experiment must not be empty"):
        load_config(None, ["mlflow.experiment= "])
    with pytest.raises(ConfigError, match=r"unknown key 'mlflow\.tracking'"):
        load_config(None, ["mlflow.tracking=x"])


def test_params_are_flattened():
    params = {"model": {"name": "esmm", "bottom_hidden": [32, 16], "dropout": 0.1},
              "training": {"loss_weights": {}, "deep_epochs": None}, "num_proc": 2, "long": "x" * 7000}
    assert tracking.flatten(params) == {
        "model.name": "esmm", "model.bottom_hidden": "[32, 16]", "model.dropout": "0.1",
        "training.loss_weights": "{}", "training.deep_epochs": "null", "num_proc": "2", "long": "x" * 6000}


def test_each_validation_is_a_step_and_the_report_metrics_are_test_metrics():
    history = [{"epoch": 0.5, "step": 10, "seconds": 1.0, "samples_per_second": 900.0,
                "train": {"ctr": 0.4, "ctcvr": 0.05}, "validation": {"ctr": 0.41, "ctcvr": 0.06},
                "normalized_entropy": {"ctr": 0.9, "ctcvr": 0.95}, "score": 1.85, "weights": {"ctr": 1.0}},
               {"epoch": 1.0, "step": 20, "seconds": 1.0, "samples_per_second": 1000.0,
                "train": {"ctr": 0.35, "ctcvr": 0.04}, "validation": {"ctr": 0.39, "ctcvr": 0.05},
                "normalized_entropy": {"ctr": 0.85, "ctcvr": 0.9}, "score": 1.75, "weights": {"ctr": 1.0}}]
    logged = tracking.history_metrics(history)
    assert ("validation.ne.ctr", 0.85, 20) in logged and ("train.ctcvr", 0.05, 10) in logged
    assert ("validation.score", 1.85, 10) in logged and ("epoch", 0.5, 10) in logged
    assert {key for key, _, _ in logged} == {"epoch", "samples_per_second", "validation.score", "train.ctr",
                                             "train.ctcvr", "validation.ctr", "validation.ctcvr",
                                             "validation.ne.ctr", "validation.ne.ctcvr"}
    metrics = {"ctr": {"auc": 0.71, "rows": 2000, "reliability": [[0.1, 0.2]]}, "ctcvr": {"auc": float("nan")}}
    final = tracking.final_metrics(metrics)
    assert final.keys() == {"test.ctr.auc", "test.ctr.rows", "test.ctcvr.auc"} and final["test.ctr.auc"] == 0.71


def test_the_champion_is_the_alias_of_a_registered_version(tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path}"])
    assert tracking.find_champion(cfg) is None and not os.path.exists(tmp_path / "mlflow.db")  # looking creates nothing
    model_dir = tmp_path / "artifacts" / "esmm-1"
    model_dir.mkdir(parents=True)
    (model_dir / "model.json").write_text("{}")

    first = tracking.log_training(cfg, model_id="esmm-1", model_type="esmm", artifact_dir=str(model_dir))
    assert tracking.find_champion(cfg) is None  # registered, no alias yet
    second = tracking.log_training(cfg, model_id="esmm-2", model_type="esmm", artifact_dir=str(model_dir))
    assert (first.version, second.version, second.uri) == (1, 2, "models:/mtrank/2")

    tracking.set_champion(cfg, first.version)
    assert tracking.find_champion(cfg) == tracking.Champion(model_id="esmm-1", version=1)
    tracking.set_champion(cfg, second.version)  # moves
    assert tracking.find_champion(cfg) == tracking.Champion(model_id="esmm-2", version=2)
