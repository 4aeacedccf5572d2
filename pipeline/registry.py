"""The ``models`` registry: every trained model is a version of the MLflow registered model
``mlflow.registered_model`` (``pipeline.tracking``), and the version with the MLflow alias
``champion`` is the model that ``pipeline score`` uses by default. The Delta ``models`` table
mirrors them for SQL: one row per version (its ``model_id``, MLflow run and version number,
metrics, artifact directory), its ``alias`` the champion's.

``pipeline train`` registers every model as a candidate (``alias`` null) and, unless told
``--no-promote``, runs the gate: the model becomes the champion when its type can score (it
estimates ``p_ctr`` and ``p_cvr``, the ``SCORE_NEEDS``), its ``promotion.metrics`` are finite,
and none is below the champion's by more than ``promotion.tolerance``, the champion measured on the
candidate's report days. With no champion yet, the first model that can score, with finite
metrics, is promoted. ``decide`` is that rule on numbers alone; ``gate`` reads the champion and
has it measured around it. The decision, one line, is the row's ``gate``.

``pipeline promote MODEL_ID`` moves the alias by hand, bypassing the gate but not the check that
the model can score; a model registered before MLflow was used (a row without a version) is
logged and registered first. The alias moves in MLflow first, then in the mirror in one Delta
commit (``delta.insert_rows`` with a unique marker, ``delta.move_marker``), so a reader of the
table sees one champion at every version once there is one. A registry written before ``alias``
and ``gate`` (or the MLflow columns) existed gets the columns on its next write.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import tracking
from pipeline.config import Config, PromotionConf
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.tables import MODELS_SCHEMA
from pipeline.tracking import CHAMPION, LoggedModel
from pipeline.training.artifacts import load_artifact

LATEST = "latest"
SCORE_NEEDS = ("p_ctr", "p_cvr")  # the estimates pipeline score reads (p_ctcvr is their product)
BY_HAND = "promoted by hand"


@dataclass(frozen=True)
class RegisteredModel:
    """A row of the ``models`` registry (the columns scoring and the gate need)."""

    model_id: str
    model_type: str
    created_at: dt.datetime
    artifact_uri: str
    alias: Optional[str] = None
    gate: Optional[str] = None
    mlflow_version: Optional[int] = None  # None: registered before MLflow was used


# ---------------------------------------------------------------------------------------------
# The gate on numbers


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str

    @property
    def line(self) -> str:
        return f"{'promoted to champion' if self.promote else 'kept as candidate'}: {self.reason}"


NOT_GATED = GateDecision(False, "--no-promote")


def missing_estimates(estimates: Iterable[str]) -> tuple[str, ...]:
    """The ``SCORE_NEEDS`` a model with these estimates (``RankingModel.estimates``) lacks;
    empty when it can score."""
    has = set(estimates)
    return tuple(name for name in SCORE_NEEDS if name not in has)


def metric_values(metrics: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> dict[str, float]:
    """``{"ctr.auc": value, ...}`` from metrics keyed by task, then metric (the ``metrics`` JSON);
    NaN for a name the metrics lack."""
    out = {}
    for name in names:
        task, _, metric = name.partition(".")
        value = metrics.get(task, {}).get(metric)
        out[name] = float(value) if isinstance(value, (int, float)) else math.nan
    return out


def decide(*, estimates: Iterable[str], candidate: Mapping[str, float], champion: Optional[Mapping[str, float]],
           conf: PromotionConf, days: Sequence[dt.date], champion_id: Optional[str] = None) -> GateDecision:
    """Whether a candidate becomes the champion (see the module doc).

    Args:
        estimates: what the candidate's network estimates (``p_ctr``, ...).
        candidate: its ``conf.metrics`` values on its report days (``metric_values``).
        champion: the champion's values on the same days; ``None`` when there is no champion.
        conf: ``promotion``.
        days: the report days (for the message).
        champion_id: the champion's id (for the message).

    Returns:
        The decision and its one-line reason.
    """
    on = f"on {_days(days)}"
    lacking = missing_estimates(estimates)
    if lacking:
        return GateDecision(False, f"cannot score: estimates {', '.join(estimates) or 'nothing'}, "
                                   f"score needs {' and '.join(SCORE_NEEDS)}")
    values = {name: candidate.get(name, math.nan) for name in conf.metrics}
    not_finite = [f"{name} {value}" for name, value in values.items() if not math.isfinite(value)]
    if not_finite:
        return GateDecision(False, f"{', '.join(not_finite)} {on} (not finite)")
    if champion is None:
        shown = ", ".join(f"{name} {value:.3f}" for name, value in values.items())
        return GateDecision(True, f"no champion yet; {shown} {on}")
    # A champion value that is not finite cannot hold a candidate back (a broken champion).
    worse = [name for name, value in values.items()
             if math.isfinite(champion.get(name, math.nan)) and value < champion[name] - conf.tolerance]
    against = f" (champion {champion_id})" if champion_id else ""
    if worse:
        shown = ", ".join(f"{name} {values[name]:.3f} < champion {champion[name]:.3f} - {conf.tolerance:.3f}"
                          for name in worse)
        return GateDecision(False, f"{shown} {on}{against}")
    shown = ", ".join(f"{name} {value:.3f} (champion {champion.get(name, math.nan):.3f})"
                      for name, value in values.items())
    return GateDecision(True, f"{shown}, tolerance {conf.tolerance:.3f}, {on}; replaces{against or ' the champion'}")


def _days(days: Sequence[dt.date]) -> str:
    if not days:
        return "no days"
    return str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]}"


# ---------------------------------------------------------------------------------------------
# The table


def read_models(spark: SparkSession, cfg: Config) -> Optional[DataFrame]:
    """The registry, or ``None`` when no model was registered yet."""
    path = cfg.table_path("models")
    return delta.read_table(spark, path) if delta.is_table(spark, path) else None


def _newest_first(models: DataFrame) -> DataFrame:
    return models.orderBy(F.col("created_at").desc(), F.col("model_id").desc())


def _registered(models: DataFrame) -> Optional[RegisteredModel]:
    """The first row of ``models`` (already filtered and ordered)."""
    columns = [name for name in ("model_id", "model_type", "created_at", "artifact_uri", "alias", "gate",
                                 "mlflow_version")
               if name in models.columns]  # alias, gate, mlflow_version: absent from a registry written before them
    rows = models.select(*columns).limit(1).collect()
    return RegisteredModel(**rows[0].asDict()) if rows else None


def has_champion(session: Callable[[], SparkSession], cfg: Config) -> bool:
    """Whether the registry holds a champion, the model ``score`` uses by default (a registry whose
    models cannot score, or have never passed the gate, gets a training on the next night).
    MLflow is asked first: ``session()`` (a Spark session, started if none runs) is called to check
    the champion's row only when MLflow names one, so a first night's plan starts no JVM."""
    champion = tracking.find_champion(cfg)
    if champion is None:
        return False
    _champion_row(session(), cfg, champion)  # raises when the table lacks it
    return True


def find_champion(spark: SparkSession, cfg: Config) -> Optional[RegisteredModel]:
    """The model whose MLflow version has the alias ``champion`` (its row of the table), or ``None``.

    Raises:
        PipelineError: the table lacks the champion's row (a table that MLflow's model is not mirrored in).
    """
    champion = tracking.find_champion(cfg)
    return None if champion is None else _champion_row(spark, cfg, champion)


def _champion_row(spark: SparkSession, cfg: Config, champion: tracking.Champion) -> RegisteredModel:
    """The models table's row of MLflow's ``champion`` (``find_champion``'s error when it is missing)."""
    models = read_models(spark, cfg)
    found = None if models is None else _registered(models.where(F.col("model_id") == F.lit(champion.model_id)))
    if found is None:
        raise PipelineError(f"the champion {champion.model_id} ({tracking.model_uri(cfg)}, version "
                            f"{champion.version}) is not in the models table at {cfg.table_path('models')}; "
                            f"mlflow.registered_model and tables.models belong together")
    return found


def resolve_model(spark: SparkSession, cfg: Config, model_id: str = CHAMPION) -> RegisteredModel:
    """The registry row of ``model_id``; ``champion``: the model with that alias; ``latest``: the
    newest ``created_at``.

    Raises:
        PipelineError: no registry, an empty one, no champion, or an id it does not hold.
    """
    path = cfg.table_path("models")
    models = read_models(spark, cfg)
    if models is None:
        raise PipelineError(f"no models registered (no models table at {path}); run pipeline train first")
    if model_id == CHAMPION:
        found = find_champion(spark, cfg)
        if found is None:
            raise PipelineError(f"no champion model in {path}; train one (the first model that can score is "
                                f"promoted) or run pipeline promote MODEL_ID")
        return found
    if model_id != LATEST:
        models = models.where(F.col("model_id") == F.lit(model_id))
    found = _registered(_newest_first(models))
    if found is None and model_id == LATEST:
        raise PipelineError(f"no models registered in {path}; run pipeline train first")
    if found is None:
        raise PipelineError(f"unknown model id {model_id!r}: not in the models registry at {path}")
    return found


def register_model(spark: SparkSession, cfg: Config, *, model_id: str, name: str, train_start: dt.date,
                   train_end: dt.date, training_set_version: int, params: dict, metrics: dict,
                   artifact_uri: str, logged: LoggedModel, decision: GateDecision = NOT_GATED) -> int:
    """Mirrors the MLflow version ``logged`` of the model in a new row; when ``decision.promote``,
    gives it the MLflow alias ``champion`` first, and the same commit moves the table's alias.
    Returns the table version written."""
    if decision.promote:
        tracking.set_champion(cfg, logged.version)
    row = {"model_id": model_id, "model_type": name, "created_at": dt.datetime.now(dt.timezone.utc),
           "train_start": train_start, "train_end": train_end, "training_set_version": training_set_version,
           "params": json.dumps(params, sort_keys=True, default=str),
           "metrics": json.dumps(metrics, sort_keys=True, default=float), "artifact_uri": artifact_uri,
           "mlflow_run_id": logged.run_id, "mlflow_version": logged.version,
           "alias": CHAMPION if decision.promote else None, "gate": decision.line}
    path = cfg.table_path("models")
    version = delta.insert_rows(spark.createDataFrame([row], MODELS_SCHEMA), path, key="model_id",
                                unique=("alias", CHAMPION) if decision.promote else None)
    delta.register_table(spark, cfg.storage.database, "models", path)
    return version


def gate(spark: SparkSession, cfg: Config, *, estimates: Iterable[str], metrics: Mapping[str, Mapping[str, float]],
         days: Sequence[dt.date], measure: Callable[[RegisteredModel], Mapping[str, Mapping[str, float]]]
         ) -> GateDecision:
    """``decide`` for a candidate against the current champion.

    Args:
        spark: the session.
        cfg: the configuration (``promotion``, tables).
        estimates: what the candidate estimates.
        metrics: the candidate's metrics on its report days (task -> metric -> value).
        days: the report days.
        measure: the champion's metrics on ``days`` (the same rows the candidate was measured on).

    Returns:
        The decision; a champion that cannot be measured keeps the candidate a candidate.
    """
    conf, estimates = cfg.promotion, tuple(estimates)
    candidate = metric_values(metrics, conf.metrics)
    alone = decide(estimates=estimates, candidate=candidate, champion=None, conf=conf, days=days)
    champion = find_champion(spark, cfg)
    if champion is None or not alone.promote:  # refused on its own: no need to measure the champion
        return alone
    try:
        measured = metric_values(measure(champion), conf.metrics)
    except PipelineError as err:
        return GateDecision(False, f"the champion {champion.model_id} could not be measured on {_days(days)}: {err}")
    return decide(estimates=estimates, candidate=candidate, champion=measured, conf=conf, days=days,
                  champion_id=champion.model_id)


@dataclass(frozen=True)
class PromoteSummary:
    model_id: str
    model_type: str
    replaced: Optional[str]
    path: str
    version: int

    def line(self) -> str:
        before = ("it already was" if self.replaced == self.model_id
                  else f"replacing {self.replaced}" if self.replaced else "the first one")
        return (f"promote: {self.model_id} ({self.model_type}) is the champion of {self.path} ({before}); "
                f"models v{self.version}")


def promote(spark: SparkSession, cfg: Config, model_id: str) -> PromoteSummary:
    """Makes ``model_id`` the champion by hand (the gate bypassed): the MLflow alias, then the
    table's in one commit; its ``gate`` records it. A model without an MLflow version (registered
    before MLflow was used) is logged and registered first.

    Raises:
        PipelineError: an unknown id, a missing artifact, or a model type that cannot score.
    """
    path = cfg.table_path("models")
    chosen = resolve_model(spark, cfg, model_id)
    lacking = missing_estimates(load_artifact(chosen.artifact_uri).network.estimates)
    if lacking:
        raise PipelineError(f"model {chosen.model_id} ({chosen.model_type}) cannot score: it lacks "
                            f"{' and '.join(lacking)} (score needs {' and '.join(SCORE_NEEDS)}); not promoted")
    current = find_champion(spark, cfg)
    if current is not None and current.model_id == chosen.model_id and chosen.alias == CHAMPION:
        return PromoteSummary(chosen.model_id, chosen.model_type, chosen.model_id, path,
                              delta.current_version(spark, path))
    also = {}
    if chosen.mlflow_version is None:
        logged = tracking.log_training(cfg, model_id=chosen.model_id, model_type=chosen.model_type,
                                      artifact_dir=chosen.artifact_uri,
                                      tags={"mtrank.registered_by": "pipeline promote"})
        chosen = dataclasses.replace(chosen, mlflow_version=logged.version)
        also = {"mlflow_run_id": F.lit(logged.run_id), "mlflow_version": F.lit(logged.version).cast("long")}
    tracking.set_champion(cfg, chosen.mlflow_version)
    delta.add_columns(spark, path, MODELS_SCHEMA)
    earlier = chosen.gate or ""
    if earlier.startswith(BY_HAND):  # promoted by hand before: keep the gate's own decision only
        earlier = earlier.partition("; before: ")[2]
    note = (f"{BY_HAND} at {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC (pipeline promote), replacing "
            f"{current.model_id if current else 'no champion'}; before: {earlier or 'no gate'}")
    version = delta.move_marker(spark, path, key="model_id", key_value=chosen.model_id, column="alias",
                                value=CHAMPION, also={"gate": F.lit(note), **also})
    return PromoteSummary(chosen.model_id, chosen.model_type, current.model_id if current else None, path, version)


def models_frame(spark: SparkSession, cfg: Config) -> Optional[pd.DataFrame]:
    """What ``pipeline models`` prints, newest first: id, type, MLflow version, when, training days,
    the ``promotion.metrics``, alias and gate; ``None`` without a registry."""
    models = read_models(spark, cfg)
    if models is None:
        return None
    for name, kind in (("alias", "string"), ("gate", "string"), ("mlflow_version", "long")):
        if name not in models.columns:
            models = models.withColumn(name, F.lit(None).cast(kind))
    frame = _newest_first(models).select("model_id", "model_type", "mlflow_version", "created_at", "train_start",
                                         "train_end", "metrics", "alias", "gate").toPandas()
    metrics = [metric_values(json.loads(text or "{}"), cfg.promotion.metrics) for text in frame["metrics"]]
    return pd.DataFrame({
        "model_id": frame["model_id"], "model_type": frame["model_type"],
        "version": [f"v{int(v)}" if pd.notna(v) else "" for v in frame["mlflow_version"]],
        "created_at": frame["created_at"].dt.strftime("%Y-%m-%d %H:%M"),
        "train": [f"{a}..{b}" for a, b in zip(frame["train_start"], frame["train_end"])],
        **{name: [m[name] for m in metrics] for name in cfg.promotion.metrics},
        "alias": frame["alias"].fillna(""), "gate": frame["gate"].fillna(""),
    })
