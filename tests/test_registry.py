"""The models registry and its promotion gate: the decision on hand-made numbers, then a tiny
real world (generated, built, trained with real PyTorch, logged and registered in a real MLflow
store, mirrored in real Delta): every training run is an MLflow run and a registered version, the
first model that can score becomes the champion, a single-task baseline and a worse model stay
candidates, score uses the champion (the MLflow alias), the champion's pyfunc in a Spark UDF scores
as score does, promote moves the alias in MLflow and in one Delta commit, and a registry written
before aliases and MLflow keeps working."""
import datetime as dt
import json
import math
import os

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from pipeline.cli import build_parser, main
from pipeline.config import PromotionConf, load_config
from pipeline.errors import ConfigError, PipelineError
from pipeline.io import delta
from pipeline import tracking
from pipeline.registry import (CHAMPION, decide, find_champion, metric_values, models_frame,
                               promote, resolve_model)
from pipeline.scoring.score import score
from pipeline.tables import MODELS_SCHEMA
from pipeline.training.train import train_model

from tests.samples.conftest import copy_world, make_cfg
from tests.scoring.test_score import WORLD, one_line, write_conf

D1, D2, D3 = (dt.date(2026, 10, day) for day in (1, 2, 3))
CAN_SCORE = ("p_ctr", "p_cvr", "p_ctcvr")
CONF = PromotionConf(tolerance=0.01, metrics=("ctr.auc", "ctcvr.auc"))


# ---------------------------------------------------------------------------------------------
# The decision on numbers


def gate_line(candidate, champion=None, estimates=CAN_SCORE, conf=CONF):
    decision = decide(estimates=estimates, candidate=candidate, champion=champion, conf=conf, days=(D2, D3),
                      champion_id="esmm-old" if champion else None)
    assert "\n" not in decision.line
    assert decision.line.startswith("promoted to champion: " if decision.promote else "kept as candidate: ")
    return decision.promote, decision.line


def test_the_first_model_that_can_score_is_promoted():
    promoted, line = gate_line({"ctr.auc": 0.7123, "ctcvr.auc": 0.655})
    assert promoted and line == ("promoted to champion: no champion yet; ctr.auc 0.712, ctcvr.auc 0.655 "
                                 "on 2026-10-02..2026-10-03")


def test_a_model_type_that_cannot_score_stays_candidate_whatever_its_metrics():
    for champion in (None, {"ctr.auc": 0.5, "ctcvr.auc": 0.5}):
        promoted, line = gate_line({"ctr.auc": 0.9, "ctcvr.auc": 0.9}, champion, estimates=("p_ctr",))
        assert not promoted and line == "kept as candidate: cannot score: estimates p_ctr, score needs p_ctr and p_cvr"


def test_a_metric_that_is_not_finite_or_missing_keeps_a_candidate():
    promoted, line = gate_line({"ctr.auc": 0.7, "ctcvr.auc": math.nan})
    assert not promoted and line == "kept as candidate: ctcvr.auc nan on 2026-10-02..2026-10-03 (not finite)"
    promoted, line = gate_line({"ctr.auc": 0.7}, {"ctr.auc": 0.6, "ctcvr.auc": 0.6})
    assert not promoted and "ctcvr.auc nan" in line


def test_worse_than_the_champion_by_more_than_the_tolerance_stays_candidate():
    promoted, line = gate_line({"ctr.auc": 0.70, "ctcvr.auc": 0.612}, {"ctr.auc": 0.70, "ctcvr.auc": 0.655})
    assert not promoted and line == ("kept as candidate: ctcvr.auc 0.612 < champion 0.655 - 0.010 "
                                     "on 2026-10-02..2026-10-03 (champion esmm-old)")


def test_within_the_tolerance_or_better_is_promoted():
    promoted, line = gate_line({"ctr.auc": 0.695, "ctcvr.auc": 0.70}, {"ctr.auc": 0.70, "ctcvr.auc": 0.65})
    assert promoted and line == ("promoted to champion: ctr.auc 0.695 (champion 0.700), ctcvr.auc 0.700 "
                                 "(champion 0.650), tolerance 0.010, on 2026-10-02..2026-10-03; replaces "
                                 "(champion esmm-old)")
    strict = PromotionConf(tolerance=0.0, metrics=CONF.metrics)
    assert not gate_line({"ctr.auc": 0.695, "ctcvr.auc": 0.70}, {"ctr.auc": 0.70, "ctcvr.auc": 0.65}, conf=strict)[0]
    # A champion value that is not finite (a broken champion) holds no candidate back.
    assert gate_line({"ctr.auc": 0.6, "ctcvr.auc": 0.6}, {"ctr.auc": math.nan, "ctcvr.auc": 0.6})[0]


def test_metric_names_are_keys_of_the_metrics_json():
    metrics = {"ctr": {"auc": 0.7, "rows": 10}, "ctcvr": {"auc": None}}
    values = metric_values(metrics, ("ctr.auc", "ctcvr.auc", "cvr.gauc"))
    assert values["ctr.auc"] == 0.7 and math.isnan(values["ctcvr.auc"]) and math.isnan(values["cvr.gauc"])
    assert load_config(None, ["promotion.metrics=[cvr.gauc]"]).promotion.metrics == ("cvr.gauc",)
    with pytest.raises(ConfigError, match=r"promotion\.metrics: 'auc_ctr' is not <task>\.<metric>"):
        load_config(None, ["promotion.metrics=[auc_ctr]"])
    with pytest.raises(ConfigError, match=r"promotion\.metrics: 'ctr\.logloss'"):
        load_config(None, ["promotion.metrics=[ctr.logloss]"])  # lower is better: not a gate metric


# ---------------------------------------------------------------------------------------------
# A tiny world: the same settings as the scoring tests; 10-01..10-03 final


@pytest.fixture(scope="module")
def world(score_world_template, tmp_path_factory):
    return copy_world(score_world_template, tmp_path_factory.mktemp("registry"), WORLD)


@pytest.fixture(scope="module")
def trained(spark, world):
    """esmm (the first champion), a ctr_dnn, and an esmm that barely learned, on later days."""
    esmm = train_model(spark, world, D1, D1, model_name="esmm", progress=False)
    ctr_dnn = train_model(spark, world, D1, D1, model_name="ctr_dnn", progress=False)
    untrained = make_cfg(world.storage.root, *WORLD, "training.learning_rate=0.000001",
                         "training.embedding_learning_rate=0.000001")
    weak = train_model(spark, untrained, D2, D2, model_name="esmm", progress=False)  # reports on 10-03
    return esmm, ctr_dnn, weak


def champions(spark, cfg, version=None):
    models = delta.read_table(spark, cfg.table_path("models"), version)
    return [row["model_id"] for row in models.where(F.col("alias") == F.lit(CHAMPION)).collect()]


def row_of(spark, cfg, model_id):
    return delta.read_table(spark, cfg.table_path("models")).where(F.col("model_id") == model_id).first()


def gate_of(spark, cfg, model_id):
    return row_of(spark, cfg, model_id)["gate"]


def client_of(cfg):
    found = tracking.store(cfg)
    return MlflowClient(tracking_uri=found.tracking_uri, registry_uri=found.registry_uri)


def mlflow_champion(cfg):
    return tracking.find_champion(cfg).model_id


def test_the_gate_on_trained_models(spark, world, trained):
    esmm, ctr_dnn, weak = trained

    assert "promoted to champion: no champion yet; ctr.auc " in esmm.line()
    assert gate_of(spark, world, esmm.model_id).startswith("promoted to champion: no champion yet")
    assert "kept as candidate: cannot score: estimates p_ctr, score needs p_ctr and p_cvr" in ctr_dnn.line()
    # The champion is measured on the weak model's report day (10-03), not on its own (10-02).
    weak_gate = gate_of(spark, world, weak.model_id)
    assert weak_gate.startswith("kept as candidate: ") and "< champion" in weak_gate, weak_gate
    assert f"on 2026-10-03 (champion {esmm.model_id})" in weak_gate and weak_gate in weak.line()
    assert champions(spark, world) == [esmm.model_id]
    # score without a model id: the champion, not the newest model (a ctr_dnn could not score).
    assert score(spark, world, D3).model_id == esmm.model_id


def test_every_training_run_is_an_mlflow_run_and_a_registered_version(spark, world, trained):
    esmm, ctr_dnn, weak = trained
    client, name = client_of(world), world.mlflow.registered_model
    row = row_of(spark, world, esmm.model_id)
    run = client.get_run(row["mlflow_run_id"])

    assert run.info.run_name == esmm.model_id and run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(os.path.join(world.storage.root, "mlflow-artifacts"))
    params = run.data.params
    assert params["model.name"] == "esmm" and params["model.bottom_hidden"] == "[32]"
    assert params["training.epochs"] == "1" and params["training.batch_size"] == "512"
    assert params["report_days"] == '["2026-10-02"]'
    assert run.data.metrics["test.ctr.auc"] == pytest.approx(esmm.metrics["ctr"]["auc"], abs=1e-12)
    assert run.data.metrics["test.ctcvr.auc"] == pytest.approx(esmm.metrics["ctcvr"]["auc"], abs=1e-12)
    with open(os.path.join(esmm.artifact_uri, "history.json"), encoding="utf-8") as fh:
        history = json.load(fh)
    for key in ("validation.ne.ctr", "validation.ne.ctcvr", "validation.ctr", "train.ctr", "validation.score"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == [h["step"] for h in history], key
    assert [m.value for m in client.get_metric_history(run.info.run_id, "validation.ne.ctr")] == \
        pytest.approx([h["normalized_entropy"]["ctr"] for h in history])
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"loss_curves.png", "model"}
    folder = f"model/artifacts/{esmm.model_id}"  # the model directory, inside the pyfunc model
    assert {f"{folder}/{n}" for n in ("weights.pt", "model.json", "encoders.json")} <= \
        {f.path for f in client.list_artifacts(run.info.run_id, folder)}

    # One version per trained model, its id in a tag and in the mirror; the alias on the champion.
    versions = {v.tags[tracking.MODEL_ID_TAG]: v for v in client.search_model_versions(f"name = '{name}'")}
    assert set(versions) == {esmm.model_id, ctr_dnn.model_id, weak.model_id}
    for model in trained:
        assert int(versions[model.model_id].version) == row_of(spark, world, model.model_id)["mlflow_version"]
        assert versions[model.model_id].run_id == row_of(spark, world, model.model_id)["mlflow_run_id"]
    assert client.get_model_version_by_alias(name, CHAMPION).version == versions[esmm.model_id].version
    assert esmm.mlflow_uri == f"models:/{name}/{versions[esmm.model_id].version}" and esmm.mlflow_uri in esmm.line()


@pytest.fixture
def tracking_uri_of(world):
    """MLflow's process-wide tracking URI set to the world's store (spark_udf reads it), then unset."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking.store(world).tracking_uri)
    yield
    mlflow.set_tracking_uri(before)


def test_the_champion_pyfunc_in_a_spark_udf_scores_as_score_does(spark, world, trained, tracking_uri_of):
    esmm, _, _ = trained
    udf = mlflow.pyfunc.spark_udf(spark, tracking.model_uri(world),
                                  result_type="p_ctr double, p_cvr double, p_ctcvr double")
    features = [*world.features.categorical, *world.features.numeric]
    samples = delta.read_table(spark, world.table_path("samples")).where(F.col("dt") == F.lit(D3))
    predicted = samples.select("impression_id", udf(F.struct(*features)).alias("p")).select("impression_id", "p.*")
    scores = (delta.read_table(spark, world.table_path("scores")).where(F.col("dt") == F.lit(D3))
              .select("impression_id", "model_id",
                      *[F.col(n).alias(f"scored_{n}") for n in ("p_ctr", "p_cvr", "p_ctcvr")]))

    both = predicted.join(scores, on="impression_id", how="inner").toPandas()

    assert len(both) == samples.count() > 0 and set(both["model_id"]) == {esmm.model_id}
    for name in ("p_ctr", "p_cvr", "p_ctcvr"):
        np.testing.assert_allclose(both[name], both[f"scored_{name}"], rtol=0, atol=1e-6, err_msg=name)


def test_promote_moves_the_alias_in_one_commit(spark, world, trained, tmp_path, capsys):
    esmm, ctr_dnn, weak = trained
    conf = write_conf(world, tmp_path)
    path = world.table_path("models")
    before = delta.current_version(spark, path)

    assert main(["promote", "--conf", conf, weak.model_id]) == 0
    assert capsys.readouterr().out.strip().endswith(f"(replacing {esmm.model_id}); models v{before + 1}")
    assert delta.current_version(spark, path) == before + 1
    for version in range(before + 2):  # every version: one champion at most, never two
        assert len(champions(spark, world, version)) <= 1
    assert champions(spark, world, before) == [esmm.model_id] and champions(spark, world) == [weak.model_id]
    assert mlflow_champion(world) == weak.model_id  # the MLflow alias moved first
    assert gate_of(spark, world, weak.model_id).startswith("promoted by hand at ")
    assert resolve_model(spark, world).model_id == weak.model_id

    # Refused in one line, nothing written: a type that cannot score, an unknown id.
    for model_id, message in ((ctr_dnn.model_id, r"cannot score: it lacks p_cvr"),
                              ("esmm-nope", r"unknown model id 'esmm-nope'")):
        with pytest.raises(PipelineError, match=message) as err:
            promote(spark, world, model_id)
        one_line(err)
    assert main(["promote", "--conf", conf, ctr_dnn.model_id]) == 2
    assert f"pipeline promote: error: model {ctr_dnn.model_id} (ctr_dnn) cannot score" in capsys.readouterr().err
    assert delta.current_version(spark, path) == before + 1

    assert promote(spark, world, esmm.model_id).replaced == weak.model_id  # and back
    assert mlflow_champion(world) == esmm.model_id
    assert main(["models", "--conf", conf]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"3 models in {path}, newest first:"
    assert [line.split()[0] for line in printed[2:]] == [weak.model_id, ctr_dnn.model_id, esmm.model_id]
    assert "champion" in printed[-1] and "ctr.auc" in printed[1] and "gate" in printed[1]


def test_no_promote_registers_a_candidate_only(spark, world, trained):
    esmm, _, _ = trained
    assert build_parser().parse_args(["train", "--start", "2026-10-01", "--end", "2026-10-01",
                                      "--no-promote"]).no_promote
    frame = models_frame(spark, world)
    champion = find_champion(spark, world)
    experiment = train_model(spark, world, D1, D1, model_name="esmm", progress=False, promote=False)
    assert experiment.line().endswith(f"kept as candidate: --no-promote; {experiment.seconds:.1f} s")
    assert find_champion(spark, world) == champion and len(models_frame(spark, world)) == len(frame) + 1
    assert mlflow_champion(world) == champion.model_id
    assert row_of(spark, world, experiment.model_id)["mlflow_version"] > champion.mlflow_version  # registered


def test_score_follows_the_mlflow_alias(spark, world, trained):
    esmm, _, weak = trained
    client, name = client_of(world), world.mlflow.registered_model
    client.set_registered_model_alias(name, CHAMPION, str(row_of(spark, world, weak.model_id)["mlflow_version"]))
    try:  # moved in MLflow alone (its UI, say): score follows MLflow, the mirror lags until a promote
        assert resolve_model(spark, world).model_id == weak.model_id
        assert champions(spark, world) == [esmm.model_id]
    finally:
        tracking.set_champion(world, row_of(spark, world, esmm.model_id)["mlflow_version"])
    assert resolve_model(spark, world).model_id == esmm.model_id


def test_a_registry_written_before_aliases_keeps_working(spark, world, trained, tmp_path):
    esmm, _, _ = trained
    path = str(tmp_path / "models")
    # Another registered model in the same store: the old table is mirrored in none yet.
    old = make_cfg(world.storage.root, *WORLD, f"tables.models={path}", "mlflow.registered_model=mtrank-legacy")
    row = {"model_id": "esmm-old", "model_type": "esmm", "created_at": dt.datetime(2026, 10, 2, 12),
           "train_start": D1, "train_end": D1, "training_set_version": 0, "params": "{}",
           "metrics": '{"ctr": {"auc": 0.7}}', "artifact_uri": esmm.artifact_uri}
    old_columns = [name for name in MODELS_SCHEMA.fieldNames() if name in row]
    spark.createDataFrame([row]).select(*old_columns).write.format("delta").save(path)

    with pytest.raises(PipelineError, match=rf"^no champion model in {path}; train one \(the first model that "
                                            r"can score is promoted\) or run pipeline promote MODEL_ID$"):
        resolve_model(spark, old)
    assert resolve_model(spark, old, "latest").model_id == "esmm-old"
    assert models_frame(spark, old)[["model_id", "ctr.auc", "alias"]].values.tolist() == [["esmm-old", 0.7, ""]]

    promote(spark, old, "esmm-old")  # registers it in MLflow, adds the columns, then moves the alias
    assert set(MODELS_SCHEMA.fieldNames()) <= set(delta.read_table(spark, path).columns)
    assert champions(spark, old) == ["esmm-old"] and mlflow_champion(old) == "esmm-old"
    assert delta.read_table(spark, path).first()["mlflow_version"] == tracking.find_champion(old).version == 1
