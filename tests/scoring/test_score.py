"""pipeline score on generated samples with a real trained model: Spark inference equals the
in-process model, idempotent writes, candidates with unseen values, model resolution, one-line
errors, the CLI, and the dynamic and learned strategies end to end."""
import datetime as dt
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from pipeline.cli import main
from pipeline.confload import to_dict
from pipeline.errors import ConfigError, PipelineError
from pipeline.features.encoders import CAT_PREFIX, NUM_PREFIX, encode
from pipeline.io import delta
from pipeline.registry import CHAMPION, LATEST, resolve_model
from pipeline.scoring import fusion
from pipeline.scoring.evaluate import evaluate_fusion
from pipeline.scoring.gates import train_fusion_gate
from pipeline.scoring.inference import spread
from pipeline.scoring.learned import LearnedFusion
from pipeline.scoring.score import score
from pipeline.scoring.weights import compute_fusion_weights
from pipeline.tables import MODELS_SCHEMA, SCORES_SCHEMA
from pipeline.training.artifacts import load_artifact
from pipeline.training.dataset import TrainingSet, batches, load_arrays, split_dates, to_tensors
from pipeline.training.evaluate import predict

from tests.samples.conftest import make_cfg
from tests.worlds import tiny_world

# Five days of 2,000 exposures; an attribution window of one day makes a day final two days later,
# so the backfill to 10-05 leaves 10-01..10-03 final. One epoch on 10-01 (validation 10-02, no
# test day) trains in seconds: these tests check plumbing, not model quality. Spark's fixed costs
# (jobs, Delta commits) dominate, so every day serves several tests:
#   10-01  training day; scored; the dynamic weights of 10-03 come from it
#   10-02  validation day (in the pinned training set); scored, re-scored by the CLI; the gate's day
#   10-03  final; scored with dynamic weights; evaluated offline
#   10-04  not final; scored with the learned gate
#   10-06  no samples: candidates from a catalog view
WORLD = tiny_world(5, "fusion.dynamic.days=2", "fusion.dynamic.smoothing=100", "fusion.learned.epochs=3")
D1, D2, D3, D4, D6 = (dt.date(2026, 10, day) for day in (1, 2, 3, 4, 6))


@pytest.fixture(scope="module")
def world(scored_world):
    """The world above, trained and scored on 10-01 and 10-02 (tests/conftest.py: shared with
    tests/test_packaging.py, which scores it again with the packaged environment)."""
    return scored_world


def with_fusion(cfg, *sets):
    """The world's conf with more ``--set`` overrides."""
    return make_cfg(cfg.storage.root, *WORLD, *sets)


def scores_of(spark, cfg, date):
    return delta.read_table(spark, cfg.table_path("scores")).where(F.col("dt") == F.lit(date))


def one_line(err):
    text = str(err.value)
    assert "\n" not in text, text
    return text


def write_conf(cfg, tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    return str(path)


# ---------------------------------------------------------------------------------------------
# The Spark job equals the model


def test_scores_equal_the_in_process_model_on_the_pinned_training_set(spark, world):
    cfg, model, _ = world
    loaded = load_artifact(model.artifact_uri)
    split = split_dates(model.train_start, model.train_end, 1, 0)
    training_set = TrainingSet(path=cfg.table_path("training_set"), version=model.training_set_version,
                               split=split, encoders=loaded.encoders)
    arrays = load_arrays(spark, training_set, (D2,))  # ordered by impression_id
    expected = predict(loaded.network,
                       batches(to_tensors(arrays), 1000, shuffle=False))

    written = scores_of(spark, cfg, D2)
    got = written.orderBy("impression_id").toPandas()

    assertSchemaEqual(written.schema, SCORES_SCHEMA)
    assert got["impression_id"].tolist() == list(arrays["impression_id"])
    for name in ("p_ctr", "p_cvr", "p_ctcvr"):
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(got["p_ctcvr"], got["p_ctr"] * got["p_cvr"])  # exactly, in double
    # Default linear fusion: 0.1 * p_ctr + 1.0 * expected value, a conversion worth 1.0.
    np.testing.assert_allclose(got["score"], 0.1 * got["p_ctr"] + got["p_ctcvr"], rtol=1e-12)
    assert got["p_value"].isna().all()  # no value head
    assert set(got["fusion"]) == {"linear"} and set(got["model_id"]) == {model.model_id}
    assert got[["request_id", "user_id", "item_id"]].notna().all().all()


def test_candidates_with_unseen_values_score_as_unknown_ids(spark, world):
    cfg, model, _ = world
    loaded = load_artifact(model.artifact_uri)
    seen = (delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt") == F.lit(D2))
            .orderBy("impression_id").limit(40)
            .drop("click", "click_ts", "conversion", "conversion_value", "labels_final", "run_id", "dt"))
    # Rows at even positions get a user, item and category never seen in training; no dt column.
    is_new = F.col("position") % 2 == 0
    candidates = seen.select(*[F.when(is_new, F.concat(F.lit("new-"), F.col(c))).otherwise(F.col(c)).alias(c)
                               if c in ("user_id", "item_id", "category") else F.col(c) for c in seen.columns])
    candidates.createOrReplaceTempView("candidates")  # a catalog table name as scoring.input
    try:
        summary = score(spark, cfg, D6, input_table="candidates")
    finally:
        spark.catalog.dropTempView("candidates")

    got = scores_of(spark, cfg, D6).orderBy("impression_id").toPandas()
    encoded = encode(candidates, loaded.encoders, keep=("impression_id", "user_id")).orderBy("impression_id").toPandas()
    cat = encoded[[f"{CAT_PREFIX}{n}" for n in loaded.encoders.categorical]].to_numpy(np.int64)
    num = encoded[[f"{NUM_PREFIX}{n}" for n in loaded.encoders.numeric]].to_numpy(np.float32)
    expected = predict(loaded.network,
                       [{"cat": torch.from_numpy(cat), "num": torch.from_numpy(num)}])
    new_users = encoded["user_id"].str.startswith("new-")
    assert summary.rows == 40 and summary.input == "candidates" and new_users.sum() >= 10
    assert (encoded.loc[new_users, f"{CAT_PREFIX}user_id"] == 0).all()
    assert got["impression_id"].tolist() == encoded["impression_id"].tolist()
    np.testing.assert_allclose(got["p_ctr"], expected["p_ctr"], rtol=0, atol=1e-6)
    assert np.isfinite(got[["p_ctr", "p_cvr", "p_ctcvr", "score"]].to_numpy()).all()


def test_rows_from_fewer_files_than_cores_are_spread_over_the_cores(spark, tmp_path):
    cores = spark.sparkContext.defaultParallelism
    spark.range(1000).coalesce(1).write.parquet(str(tmp_path / "one"))
    spark.range(1000).repartition(cores).write.parquet(str(tmp_path / "many"))
    one, many = spark.read.parquet(str(tmp_path / "one")), spark.read.parquet(str(tmp_path / "many"))

    per_task = spread(one).groupBy(F.spark_partition_id()).count().collect()

    assert len(per_task) == cores and sum(row["count"] for row in per_task) == 1000
    assert spread(many) is many  # already one file per core: no shuffle


# ---------------------------------------------------------------------------------------------
# Model resolution and errors


def test_champion_by_default_latest_the_newest_registered_model(spark, world, tmp_path):
    cfg, model, _ = world
    path = str(tmp_path / "models")
    # Another table, another registered model in the same MLflow store: a registry of its own.
    registry = make_cfg(cfg.storage.root, *WORLD, f"tables.models={path}", "mlflow.registered_model=mtrank-other")
    with pytest.raises(PipelineError, match=r"no models registered \(no models table at ") as err:
        resolve_model(spark, registry)
    one_line(err)
    spark.createDataFrame([], MODELS_SCHEMA).write.format("delta").save(path)
    with pytest.raises(PipelineError, match=r"no models registered in "):
        resolve_model(spark, registry, LATEST)
    with pytest.raises(PipelineError, match=rf"no champion model in {re.escape(path)}; train one .* pipeline promote"):
        resolve_model(spark, registry)

    # The newer row is appended first: latest goes by created_at, not by the order of rows.
    rows = [{"model_id": model_id, "model_type": "esmm", "created_at": dt.datetime(2026, 10, 2, hour),
             "train_start": D1, "train_end": D1, "training_set_version": 0, "params": "{}", "metrics": "{}",
             "artifact_uri": model.artifact_uri} for model_id, hour in (("newer", 12), ("older", 11))]
    delta.append(spark.createDataFrame(rows, MODELS_SCHEMA), path)

    assert resolve_model(spark, registry, LATEST).model_id == "newer"
    assert resolve_model(spark, registry, "older").model_id == "older"
    assert resolve_model(spark, cfg, "latest").model_id == model.model_id
    # The world's one model passed the gate: the champion that scored its days.
    assert resolve_model(spark, cfg).model_id == resolve_model(spark, cfg, CHAMPION).model_id == model.model_id
    assert "promoted to champion: no champion yet" in model.line()


def test_bad_requests_fail_in_one_line_before_writing(spark, world):
    cfg, _, _ = world
    version = delta.current_version(spark, cfg.table_path("scores"))
    cases = [
        (cfg, D2, {"model_id": "esmm-nope"}, r"unknown model id 'esmm-nope'"),
        (cfg, dt.date(2026, 11, 1), {}, r"no rows for dt=2026-11-01 in samples"),
        (with_fusion(cfg, "fusion.value_source=column", "fusion.value_column=margin"), D2, {},
         r"fusion\.value_column: needs column 'margin'"),
        (with_fusion(cfg, "fusion.value_source=p_value"), D2, {}, r"fusion\.value_source: needs column 'p_value'"),
        (with_fusion(cfg, "fusion.strategy=dynamic", "fusion.dynamic.segment=colour"), D2, {},
         r"fusion\.dynamic\.segment: needs column 'colour'"),
        (cfg, D2, {"input_table": "/no/such/table"}, r"scoring\.input: '/no/such/table' is neither"),
    ]
    for case_cfg, date, kwargs, message in cases:
        with pytest.raises(PipelineError, match=message) as err:
            score(spark, case_cfg, date, **kwargs)
        one_line(err)
    with pytest.raises(ConfigError, match=r"fusion\.linear\.p_click: unknown term"):
        with_fusion(cfg, "fusion.linear.p_click=1")
    assert delta.current_version(spark, cfg.table_path("scores")) == version


# ---------------------------------------------------------------------------------------------
# Dynamic and learned, end to end


@pytest.fixture(scope="module")
def weights(spark, world):
    cfg, _, _ = world
    return compute_fusion_weights(spark, cfg, D3)  # labelled days 09-30..10-01


@pytest.fixture(scope="module")
def dynamic_scores(spark, world, weights):
    cfg, _, _ = world
    return score(spark, with_fusion(cfg, "fusion.strategy=dynamic"), D3)


@pytest.fixture(scope="module")
def gate(spark, world):
    cfg, _, _ = world
    return train_fusion_gate(spark, cfg, D2)


def labelled_frame(spark, cfg, date):
    """Written scores of ``date`` with the sample columns fusion reads."""
    samples = delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt") == F.lit(date))
    return (scores_of(spark, cfg, date).select("impression_id", "p_ctr", "p_cvr", "p_ctcvr", "score", "fusion")
            .join(samples.select("impression_id", "request_id", "category", "device"), on="impression_id",
                  how="inner")
            .orderBy("impression_id").toPandas())


def test_dynamic_fusion_scores_with_the_computed_weights(spark, world, weights, dynamic_scores):
    cfg, _, rows = world
    dynamic = with_fusion(cfg, "fusion.strategy=dynamic")
    with pytest.raises(PipelineError, match=r"no fusion weights computed on or before 2026-10-02.*"
                                            r"run pipeline fusion-weights") as err:
        score(spark, dynamic, D2)
    one_line(err)

    table = delta.read_table(spark, cfg.table_path("fusion_weights")).where(F.col("dt") == F.lit(D3))
    frame = labelled_frame(spark, cfg, D3)
    expected = fusion.fused_scores(dynamic.fusion, frame, weights_table=table.toPandas())
    # 09-30 has no samples: the weights come from the final, scored exposures of 10-01.
    assert (weights.from_date, weights.to_date) == (dt.date(2026, 9, 30), D1)
    assert weights.exposures == rows[D1] and weights.segments >= 2
    assert dynamic_scores.fusion_source == "weights of 2026-10-03" and set(frame["fusion"]) == {"dynamic"}
    np.testing.assert_allclose(frame["score"], expected, rtol=1e-12)
    assert not np.allclose(frame["score"], 0.1 * frame["p_ctr"] + frame["p_ctcvr"])


def test_learned_fusion_scores_with_the_newest_gate_before_the_day(spark, world, gate):
    cfg, _, rows = world
    learned = with_fusion(cfg, "fusion.strategy=learned")
    with pytest.raises(PipelineError, match=r"no gate trained on a day before 2026-10-02") as err:
        score(spark, learned, D2)
    one_line(err)

    summary = score(spark, learned, D4)

    frame = labelled_frame(spark, cfg, D4)
    expected = fusion.fused_scores(learned.fusion, frame, strategy="learned",
                                   learned=LearnedFusion.load(gate.directory))
    assert gate.directory.endswith(os.path.join("fusion", "learned-2026-10-02"))
    assert gate.rows == rows[D2] and len(gate.history) == 3
    assert summary.fusion_source == "gate trained on 2026-10-02" and set(frame["fusion"]) == {"learned"}
    np.testing.assert_allclose(frame["score"], expected, rtol=1e-5)
    with pytest.raises(PipelineError, match=r"samples for 2026-10-04 are not final yet"):
        train_fusion_gate(spark, cfg, D4)


def test_fusion_eval_prints_the_comparison_table(spark, world, dynamic_scores, gate, tmp_path, capsys):
    cfg, _, _ = world

    assert main(["fusion-eval", "--conf", write_conf(cfg, tmp_path), "--date", str(D3)]) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    report = evaluate_fusion(spark, cfg, D3).table
    assert re.match(r"fusion-eval 2026-10-03: [\d,]+ exposures in [\d,]+ requests; "
                    r"dynamic weights of 2026-10-03; learned gate of 2026-10-02$", lines[0])
    assert lines[1].split() == ["strategy", "k", "ndcg_at_k", "mean_ndcg_at_k", "revenue_at_k", "weights"]
    assert [line.split()[0] for line in lines[2:]] == ["linear", "power", "dynamic", "learned", "linear_grid_best"]
    assert report["ndcg_at_k"].between(0, 1).all() and report["revenue_at_k"].ge(0).all()
    assert "p_ctr=" in lines[-1]  # the grid search's best linear weights


# ---------------------------------------------------------------------------------------------
# The command line.


def test_cli_rescores_a_date_in_one_line_replacing_only_its_partition(spark, world, tmp_path, capsys):
    cfg, model, _ = world
    path = cfg.table_path("scores")
    version = delta.current_version(spark, path)
    conf = write_conf(cfg, tmp_path)

    # The command in this process (its Spark session is the tests' one), then the installed
    # ``pipeline`` script with a bad date: the one-line error, before any Spark starts.
    assert main(["score", "--conf", conf, "--date", str(D2)]) == 0
    out = capsys.readouterr().out
    pipeline = os.path.join(os.path.dirname(sys.executable), "pipeline")
    bad = subprocess.run([pipeline, "score", "--conf", conf, "--date", "2026-10-32"], capture_output=True,
                         text=True, timeout=600)

    assert len(out.strip().splitlines()) == 1
    assert re.match(rf"score {D2}: [\d,]+ rows of samples scored by {model.model_id}, fusion linear; "
                    rf"scores v{version + 1} at ", out)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "pipeline score: error: bad --date: '2026-10-32' (expected a date YYYY-MM-DD)"]
    # The same partition again (a new scored_at), and every other date untouched.
    before, after = delta.read_table(spark, path, version), delta.read_table(spark, path)
    is_d2 = F.col("dt") == F.lit(D2)
    assertDataFrameEqual(after.where(is_d2).drop("scored_at"), before.where(is_d2).drop("scored_at"))
    assertDataFrameEqual(after.where(~is_d2), before.where(~is_d2))
    assert after.where(is_d2).agg(F.min("scored_at")).first()[0] > before.where(is_d2).agg(
        F.max("scored_at")).first()[0]


# ---------------------------------------------------------------------------------------------
# --dry-run


def test_dry_runs_say_what_they_would_read_and_write_and_write_nothing(spark, world, tmp_path, capsys):
    cfg, model, _ = world
    conf = write_conf(cfg, tmp_path)
    tables = [name for name in ("samples", "quarantine", "runs", "models", "scores", "training_set")
              if delta.is_table(spark, cfg.table_path(name))]
    versions = {name: delta.current_version(spark, cfg.table_path(name)) for name in tables}

    assert main(["build-samples", "--conf", conf, "--date", "2026-10-05", "--dry-run"]) == 0
    built = capsys.readouterr().out
    assert built.startswith("build-samples --dry-run: nightly run rebuilding 2026-10-0")
    for source in ("exposures", "clicks", "conversions"):
        assert f"  {source}: {cfg.raw_path(source)}/dt=" in built
    assert f"  samples: {cfg.table_path('samples')} (replace dt " in built
    assert built.rstrip().endswith("nothing was written")

    assert main(["train", "--conf", conf, "--start", str(D1), "--end", str(D1), "--dry-run"]) == 0
    trained = capsys.readouterr().out
    assert trained.startswith(f"train --dry-run: esmm on {D1} with 1 process(es)")
    assert f"samples: {cfg.table_path('samples')} train {D1} (" in trained
    assert f"the gate against the champion {model.model_id}" in trained

    assert main(["score", "--conf", conf, "--date", str(D2), "--dry-run"]) == 0
    scored = capsys.readouterr().out
    assert f"  model: {model.model_id} (champion; " in scored
    assert f"  scores: {cfg.table_path('scores')} (replace dt {D2}; fusion linear)" in scored

    # A dry run fails where the run would, with its one-line error.
    assert main(["score", "--conf", conf, "--date", str(D6), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (f"pipeline score: error: no rows for dt={D6} in samples; nothing to "
                                               f"score (build-samples for that date, or another --date)")
    assert {name: delta.current_version(spark, cfg.table_path(name)) for name in tables} == versions
