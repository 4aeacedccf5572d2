"""MLflow: every ``pipeline train`` is a run, every trained model a registered version, and the
version with the alias ``champion`` is the model ``pipeline score`` uses. The only module that
imports mlflow.

The store is ``mlflow.tracking_uri``; by default a SQLite file under ``storage.root``
(``sqlite:///<root>/mlflow.db``), the experiments it creates keeping their artifacts in
``<root>/mlflow-artifacts``. A run is logged when training has finished, from what the trainer
recorded: the model spec and training conf as flattened params, the losses and validation
normalized entropy of every validation (step = the training step), the report-day metrics as
``test.<task>.<metric>``, the loss curves, and the model itself as a pyfunc (``RankingPyfunc``)
whose artifacts are the model directory (weights, spec, encoders, history, conf). Each logged
model becomes a version of ``mlflow.registered_model``, tagged with its ``model_id``.

Every call goes through an ``MlflowClient`` for the conf's URIs: nothing here changes MLflow's
process-wide tracking URI, so two confs (two test worlds) in one process never mix. MLflow's
usage telemetry is off unless ``MLFLOW_DISABLE_TELEMETRY`` says otherwise (batch jobs, often
without internet).
"""
from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Mapping, Optional, Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
from pipeline.console import is_terminal  # noqa: E402

if not is_terminal():  # MLflow's download bars would be carriage-return noise in a captured log
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow.pyfunc  # noqa: E402 (after the telemetry default)
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunStatus  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode  # noqa: E402

from pipeline import __version__  # noqa: E402
from pipeline.config import Config  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402

CHAMPION = "champion"
MODEL_PATH = "model"                 # the pyfunc model's folder in a run's artifacts
MODEL_ID_TAG = "mtrank.model_id"     # on runs and versions: the project's model id
MODEL_TYPE_TAG = "mtrank.model_type"
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pyarrow", "pyspark")  # pinned in the logged model
MAX_PARAM_LENGTH = 6000              # MLflow's limit on a param value


# ---------------------------------------------------------------------------------------------
# The store


@dataclass(frozen=True)
class Store:
    """Where runs and versions go (``store``)."""

    tracking_uri: str
    registry_uri: str
    artifact_location: Optional[str]  # for the experiment when this project creates it; None: the store's own
    experiment: str
    model_name: str


def store(cfg: Config) -> Store:
    """The MLflow store of ``cfg`` (see the module doc).

    Raises:
        PipelineError: no ``mlflow.tracking_uri`` with a ``storage.root`` that is not a local folder.
    """
    root, uri = cfg.storage.root, cfg.mlflow.tracking_uri
    local = is_local_path(root)
    folder = os.path.abspath(root[len("file:"):] if root.startswith("file:") else root) if local else root.rstrip("/")
    if uri is None:
        if not local:
            raise PipelineError(f"mlflow.tracking_uri: storage.root {root} is not a local folder, so it cannot hold "
                                f"the default SQLite store; set mlflow.tracking_uri (http://host:5000, databricks, "
                                f"sqlite:////local/path/mlflow.db)")
        uri = f"sqlite:///{folder}/mlflow.db"
    is_database_file = uri.startswith("sqlite:")  # no server that would keep the artifacts
    return Store(tracking_uri=uri, registry_uri=cfg.mlflow.registry_uri or uri,
                 artifact_location=f"{folder}/mlflow-artifacts" if is_database_file else None,
                 experiment=cfg.mlflow.experiment, model_name=cfg.mlflow.registered_model)


def is_local_path(path: str) -> bool:
    """A folder of this machine: no scheme, or ``file:``."""
    head = path.split("/", 1)[0]
    return ":" not in head or head == "file:"


def model_uri(cfg: Config, alias: str = CHAMPION) -> str:
    """``models:/<registered model>@<alias>``: what ``mlflow.pyfunc.load_model`` and ``spark_udf`` take."""
    return f"models:/{cfg.mlflow.registered_model}@{alias}"


def ui_command(cfg: Config) -> str:
    """One line saying where to see the runs: for a SQLite store, the ``mlflow ui`` command."""
    try:
        uri = store(cfg).tracking_uri
    except PipelineError as err:
        return f"MLflow: {err}"
    if not uri.startswith("sqlite:"):
        return f"MLflow runs and models: {uri}, experiment {cfg.mlflow.experiment}"
    beside = os.path.join(os.path.dirname(sys.executable), "mlflow")  # the venv's, when it is not on PATH
    return f"MLflow runs and models: {beside if os.path.exists(beside) else 'mlflow'} ui --backend-store-uri {uri}"


def _client(found: Store) -> MlflowClient:
    return MlflowClient(tracking_uri=found.tracking_uri, registry_uri=found.registry_uri)


def _is(err: MlflowException, code: int) -> bool:
    return err.error_code == ErrorCode.Name(code)


# ---------------------------------------------------------------------------------------------
# What a run logs (pure)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"name": "esmm"}}`` -> ``{"model.name": "esmm"}``; lists and empty mappings as
    JSON text, values cut to MLflow's limit."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text[:MAX_PARAM_LENGTH]
    return out


def history_metrics(history: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """``(key, value, step)`` for every validation of a training history (``loop.fit``): the epoch,
    the train and validation losses, the validation normalized entropy per task and its sum (the
    early-stopping score), samples per second."""
    out = []
    for row in history:
        step = int(row["step"])
        values = {"epoch": row["epoch"], "validation.score": row["score"],
                  "samples_per_second": row["samples_per_second"],
                  **{f"train.{k}": v for k, v in row["train"].items()},
                  **{f"validation.{k}": v for k, v in row["validation"].items()},
                  **{f"validation.ne.{k}": v for k, v in row["normalized_entropy"].items()}}
        out += [(key, float(value), step) for key, value in values.items() if _is_number(value)]
    return out


def final_metrics(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``test.<task>.<metric>`` of the report-day metrics (task -> metric -> value), numbers only."""
    return {f"test.{task}.{name}": float(value) for task, values in metrics.items()
            for name, value in values.items() if _is_number(value)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def requirements() -> list[str]:
    """The logged model's pip requirements: mtrank and the installed versions of ``REQUIREMENTS``."""
    return [f"mtrank=={__version__}", *[f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]]


# ---------------------------------------------------------------------------------------------
# The pyfunc model


class RankingPyfunc(mlflow.pyfunc.PythonModel):
    """A trained model as an MLflow pyfunc: ``p_ctr``, ``p_cvr`` and ``p_ctcvr`` (those it
    estimates) for a pandas frame of the raw feature columns, encoded with its own encoders as
    ``pipeline score`` encodes them in Spark (``encode_frame``). Needs mtrank importable where
    it is loaded (``env_manager="local"``, the default)."""

    def __init__(self, batch_size: int = 4096):
        self.batch_size = batch_size

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from pipeline.training.artifacts import load_artifact

        self.model = load_artifact(context.artifacts[MODEL_PATH])

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: Optional[dict[str, Any]] = None) -> pd.DataFrame:
        from pipeline.features.encoders import encode_frame
        from pipeline.tables import PREDICTIONS
        from pipeline.training.artifacts import predict_arrays

        cat, num = encode_frame(model_input, self.model.encoders)
        out = predict_arrays(self.model, cat, num, self.batch_size)
        return pd.DataFrame({name: out[name] for name in PREDICTIONS if name in out})


# ---------------------------------------------------------------------------------------------
# Runs and versions


@dataclass(frozen=True)
class LoggedModel:
    """A training run and the registered version of its model."""

    run_id: str
    version: int
    model_name: str

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def log_training(cfg: Config, *, model_id: str, model_type: str, artifact_dir: str,
                 params: Optional[Mapping[str, Any]] = None, history: Sequence[Mapping[str, Any]] = (),
                 metrics: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 tags: Optional[Mapping[str, str]] = None) -> LoggedModel:
    """Logs one training run (named ``model_id``) and registers its model as a new version.

    Args:
        cfg: the configuration (``mlflow``, ``storage.root``, ``scoring.batch_size``).
        model_id: the project's id of the model.
        model_type: the model's name (esmm, ...).
        artifact_dir: the model directory (``save_artifact``), logged inside the pyfunc model.
        params: nested params (flattened here).
        history: the trainer's history, one row per validation.
        metrics: the report-day metrics, task -> metric -> value.
        tags: more run tags.

    Returns:
        The run and the version. A failure after the run started marks the run FAILED.
    """
    found = store(cfg)
    client = _client(found)
    ids = {MODEL_ID_TAG: model_id, MODEL_TYPE_TAG: model_type}
    run = client.create_run(_experiment_id(client, found), run_name=model_id, tags={**ids, **(tags or {})})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(run_id,
                         metrics=[Metric(k, v, now, s) for k, v, s in history_metrics(history)]
                         + [Metric(k, v, now, 0) for k, v in final_metrics(metrics or {}).items()],
                         params=[Param(k, v) for k, v in flatten(params or {}).items()])
        with tempfile.TemporaryDirectory(prefix="mtrank-mlflow-") as scratch:
            if history:
                client.log_artifact(run_id, _loss_curves(scratch, f"{model_type}\n{model_id}", history))
            mlflow.pyfunc.save_model(os.path.join(scratch, MODEL_PATH),
                                     python_model=RankingPyfunc(cfg.scoring.batch_size),
                                     artifacts={MODEL_PATH: artifact_dir}, pip_requirements=requirements())
            client.log_artifacts(run_id, os.path.join(scratch, MODEL_PATH), MODEL_PATH)
        _ensure_registered_model(client, found.model_name)
        version = client.create_model_version(found.model_name, source=f"{run.info.artifact_uri}/{MODEL_PATH}",
                                              run_id=run_id, tags=ids)
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id)
    return LoggedModel(run_id=run_id, version=int(version.version), model_name=found.model_name)


def _loss_curves(folder: str, title: str, history: Sequence[Mapping[str, Any]]) -> str:
    """The report's loss-curve figure of one history, written as ``loss_curves.png``."""
    from pipeline.report.plots import loss_curves_plot

    path = os.path.join(folder, "loss_curves.png")
    with open(path, "wb") as fh:
        fh.write(base64.b64decode(loss_curves_plot({title: history})))
    return path


def _experiment_id(client: MlflowClient, found: Store) -> str:
    """The experiment's id, created on first use (with the artifact location of ``store``)."""
    existing = client.get_experiment_by_name(found.experiment)
    if existing is not None:
        return existing.experiment_id
    try:
        return client.create_experiment(found.experiment, artifact_location=found.artifact_location)
    except MlflowException as err:  # another run created it meanwhile
        if not _is(err, RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(found.experiment).experiment_id


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name, description="mtrank ranking models; the alias champion is scored")
    except MlflowException as err:
        if not _is(err, RESOURCE_ALREADY_EXISTS):
            raise


# ---------------------------------------------------------------------------------------------
# The champion alias


@dataclass(frozen=True)
class Champion:
    model_id: str
    version: int


def find_champion(cfg: Config) -> Optional[Champion]:
    """The version with the alias ``champion`` and its model id; ``None`` when there is none (or
    no store yet: a default store that was never written to is not created by looking)."""
    found = store(cfg)
    if cfg.mlflow.tracking_uri is None and not os.path.exists(found.tracking_uri[len("sqlite:///"):]):
        return None  # opening it would create it (and MLflow's tables: seconds)
    client = _client(found)
    try:
        aliases = client.get_registered_model(found.model_name).aliases  # alias -> version
    except MlflowException as err:
        if _is(err, RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    if CHAMPION not in aliases:
        return None
    version = client.get_model_version(found.model_name, str(aliases[CHAMPION]))
    model_id = version.tags.get(MODEL_ID_TAG)
    if not model_id:
        raise PipelineError(f"{model_uri(cfg)} (version {version.version}) has no {MODEL_ID_TAG} tag; "
                            f"it was not registered by pipeline train")
    return Champion(model_id=model_id, version=int(version.version))


def set_champion(cfg: Config, version: int) -> None:
    """Gives the alias ``champion`` to ``version`` (MLflow moves it from the version that had it)."""
    found = store(cfg)
    _client(found).set_registered_model_alias(found.model_name, CHAMPION, str(version))
