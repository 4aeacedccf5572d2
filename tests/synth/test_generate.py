import filecmp
import glob
import gzip
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.logs import schema
from pipeline.synth.generate import generate, read_manifest

DIRTY = 0.03  # every dirt rate in the rate test: large enough to measure


def conf(root, *extra):
    return load_config("conf/local.yaml", [f"storage.root={root}", *extra])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three days of 30k exposures with 3 % of every kind of dirt."""
    root = tmp_path_factory.mktemp("gen")
    dirt = [f"synth.dirt.{kind}={DIRTY}" for kind in
            ("duplicate", "malformed", "missing_field", "bad_ts", "orphan", "negative_value", "before_parent")]
    cfg = conf(root, "synth.days=3", "synth.exposures_per_day=30000", "synth.cvr=0.2", *dirt)
    summary = generate(cfg, progress=False)
    truth = pd.read_parquet(cfg.truth_path)
    return cfg, summary, truth, read_manifest(cfg.truth_path)


def totals(manifest, source):
    out = {}
    for per_reason in manifest["lines"][source].values():
        for reason, n in per_reason.items():
            out[reason] = out.get(reason, 0) + n
    return out


def within(observed, expected_rate, n, sds=5.0):
    """Observed count is within `sds` binomial standard deviations of n * rate."""
    sd = np.sqrt(n * expected_rate * (1 - expected_rate))
    return abs(observed - n * expected_rate) <= sds * max(sd, 1.0)


def test_layout_follows_the_raw_log_contract(world):
    cfg, summary, _, _ = world
    exposure_days = sorted(os.path.basename(p) for p in glob.glob(os.path.join(cfg.raw_path("exposures"), "dt=*")))
    assert exposure_days == ["dt=2026-10-01", "dt=2026-10-02", "dt=2026-10-03"]
    for source in schema.SOURCES:
        files = glob.glob(os.path.join(cfg.raw_path(source), "dt=*", "*.jsonl"))
        assert files, source
    # Conversions arrive days later: their event dates run past the exposure days.
    conversion_days = sorted(os.listdir(cfg.raw_path("conversions")))
    assert conversion_days[-1] > "dt=2026-10-04"
    assert summary.exposures == 90_000


def test_same_seed_gives_identical_files(tmp_path):
    a, b, c = (conf(tmp_path / name, "synth.days=2", "synth.exposures_per_day=3000", f"synth.seed={seed}")
               for name, seed in (("a", 1), ("b", 1), ("c", 2)))
    for cfg in (a, b, c):
        generate(cfg, progress=False)
    files_a = sorted(os.path.relpath(p, tmp_path / "a") for p in glob.glob(f"{tmp_path / 'a'}/**/*", recursive=True)
                     if os.path.isfile(p))
    assert len(files_a) > 10
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files_a, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", files_a, shallow=False)
    assert mismatch


def test_rates_match_the_conf(world):
    cfg, _, truth, _ = world
    n = len(truth)
    assert abs(truth["p_ctr"].mean() / cfg.synth.ctr - 1) < 0.05
    assert within(truth["clicked"].sum(), cfg.synth.ctr, n)
    clicked = truth[truth["clicked"] == 1]
    assert abs(clicked["p_cvr"].mean() / cfg.synth.cvr - 1) < 0.08
    assert within(clicked["would_convert"].sum(), cfg.synth.cvr, len(clicked))
    late_clicks = (clicked["click"] == 0).sum()
    assert within(late_clicks, cfg.synth.late_click_rate, len(clicked))


def test_dirt_per_kind_matches_the_conf(world):
    _, _, _, manifest = world
    for source in schema.SOURCES:
        counts = totals(manifest, source)
        clean = counts["clean"]
        fields = schema.REQUIRED_FIELDS[source]
        kinds = {"duplicate": counts["duplicate"], "malformed": counts["malformed"], "bad_ts": counts["bad_ts"],
                 "missing_field": sum(counts.get(schema.missing(f), 0) for f in fields)}
        if source in schema.PARENT:
            kinds["orphan"] = counts[schema.UNKNOWN_PARENT[source]]
            kinds["before_parent"] = counts[schema.BEFORE_PARENT[source]]
        if source == "conversions":
            kinds["negative_value"] = counts[schema.NEGATIVE_VALUE]
        for kind, observed in kinds.items():
            assert within(observed, DIRTY, clean), (source, kind, observed, clean)
        assert all(counts.get(schema.missing(f), 0) > 0 for f in fields) or clean < 2000, (source, counts)
        assert set(counts) <= {"clean", "duplicate", *schema.QUARANTINE_REASONS}


def test_truth_probabilities_and_labels_agree(world):
    _, _, truth, _ = world
    for column in ("p_ctr", "p_cvr", "p_ctcvr"):
        assert truth[column].between(0, 1, inclusive="neither").all()
    np.testing.assert_allclose(truth["p_ctcvr"], truth["p_ctr"] * truth["p_cvr"])
    # Calibration by decile: outcomes match the true probabilities within sampling noise.
    for outcome, prob in (("clicked", "p_ctr"), ("would_convert", "p_cvr")):
        bins = pd.qcut(truth[prob], 10, labels=False)
        for _, group in truth.groupby(bins):
            assert within(group[outcome].sum(), group[prob].mean(), len(group)), (outcome, group[prob].mean())
    # Clean labels follow the contract: conversion implies click; value > 0 exactly when converted.
    assert (truth["click"] <= truth["clicked"]).all()
    assert (truth["conversion"] <= truth["click"]).all()
    assert (truth["conversion"] <= truth["would_convert"]).all()
    assert ((truth["conversion_value"] > 0) == (truth["conversion"] == 1)).all()


def clicked_cvr_ratio(tmp_path, *extra):
    """Mean true pCVR of clicked exposures over that of all exposures, for one generated day."""
    cfg = conf(tmp_path, "synth.days=1", "synth.exposures_per_day=60000", *extra)
    generate(cfg, progress=False)
    truth = pd.read_parquet(cfg.truth_path)
    return truth.loc[truth["clicked"] == 1, "p_cvr"].mean() / truth["p_cvr"].mean()


def test_clicked_exposures_are_a_biased_sample_for_cvr(tmp_path):
    # Shared interest alone: users click what they would buy. Clickbait alone: they click what
    # they would not buy. Neither: clicking tells nothing about converting.
    assert clicked_cvr_ratio(tmp_path / "shared", "synth.selection_bias=0") > 1.3
    assert clicked_cvr_ratio(tmp_path / "clickbait", "synth.shared_interest=0") < 0.85
    assert 0.9 < clicked_cvr_ratio(tmp_path / "neither", "synth.selection_bias=0", "synth.shared_interest=0") < 1.1
    # Negative shared interest alone: users tend not to buy what they like to click.
    assert clicked_cvr_ratio(tmp_path / "opposed", "synth.selection_bias=0", "synth.shared_interest=-0.9") < 0.8


def simulated(*extra) -> pd.DataFrame:
    """Exposures and truth of every simulated day, in memory (no files written)."""
    from pipeline.quality.suite import simulate_samples

    return simulate_samples(load_config(None, ["synth.exposures_per_day=20000", *extra]))


def test_cold_ids_first_appear_on_the_last_day():
    samples = simulated("synth.days=3", "synth.num_users=2000", "synth.num_items=600", "synth.cold_share=0.3")
    last = samples["dt"].max()
    before = samples[samples["dt"] < last]
    on_last = samples[samples["dt"] == last]
    for key in ("user_id", "item_id"):
        new = ~on_last[key].isin(set(before[key]))
        # Exposures of new ids: most of the cold ids' share (some warm ids simply had no exposure before).
        assert 0.15 < new.mean() < 0.45, (key, new.mean())
    warm = simulated("synth.days=3", "synth.num_users=2000", "synth.num_items=600")
    assert (~warm.loc[warm["dt"] == last, "item_id"].isin(set(warm.loc[warm["dt"] < last, "item_id"]))).mean() < 0.02


def test_popularity_and_activity_spread_are_settings():
    def top_share(frame, key):
        counts = frame[key].value_counts()
        return counts.iloc[:len(counts) // 100].sum() / counts.sum()  # exposures of the top 1 %

    flat = simulated("synth.days=1", "synth.item_popularity_exponent=0", "synth.user_activity_sigma=0")
    skewed = simulated("synth.days=1", "synth.item_popularity_exponent=1.2", "synth.user_activity_sigma=1.5")
    assert top_share(flat, "item_id") < 0.02 and top_share(skewed, "item_id") > 0.1
    assert top_share(flat, "user_id") < 0.03 and top_share(skewed, "user_id") > 0.1


def test_affinity_scale_sets_how_personal_preferences_are():
    from pipeline.metrics import auc

    def oracle(scale):
        samples = simulated("synth.days=1", f"synth.affinity_scale={scale}")
        return auc(samples["click"], samples["p_ctr"])

    assert oracle(0.0) < oracle(1.0) < oracle(2.0)


def read_raw(spark, cfg, source):
    """Reads a raw source with the contract's schema, keeping malformed lines."""
    struct = schema.raw_schema(source, cfg.features.categorical, cfg.features.numeric)
    struct = struct.add("_corrupt_record", "string")
    df = (spark.read.schema(struct).option("mode", "PERMISSIVE")
          .option("columnNameOfCorruptRecord", "_corrupt_record")
          .json(cfg.raw_path(source)).cache())
    is_epoch = F.col("ts").rlike("^[0-9]+$")
    parsed = F.when(is_epoch, F.timestamp_millis(F.col("ts").cast("long"))).otherwise(F.col("ts").try_cast("timestamp"))
    return df.withColumn("event_ts", parsed)


def test_files_parse_with_the_contract_schema(spark, world):
    cfg, _, truth, manifest = world
    for source in schema.SOURCES:
        counts = totals(manifest, source)
        df = read_raw(spark, cfg, source)
        assert df.count() == sum(counts.values()), source
        assert df.where(F.col("_corrupt_record").isNotNull()).count() == counts["malformed"], source
        well_formed = df.where(F.col("_corrupt_record").isNull())
        unparseable = well_formed.where(F.col("ts").isNotNull() & F.col("event_ts").isNull()).count()
        assert unparseable == counts["bad_ts"], source
        # Every parseable record lies in the folder of its UTC event date.
        misplaced = well_formed.where(F.col("event_ts").isNotNull() & (F.to_date("event_ts") != F.col("dt")))
        assert misplaced.count() == 0, source

    exposures = read_raw(spark, cfg, "exposures").where("_corrupt_record IS NULL")
    clicks = read_raw(spark, cfg, "clicks").where("_corrupt_record IS NULL")
    assert exposures.select("impression_id").distinct().count() >= len(truth)
    # Clean clicks are later than their exposure, and some cross midnight into the next day.
    joined = clicks.alias("c").join(exposures.alias("e"), on="impression_id", how="inner") \
        .where("c.click_id LIKE 'clk-0%'").dropDuplicates(["click_id"])
    assert joined.where("c.event_ts <= e.event_ts").count() == 0
    assert joined.where("c.dt > e.dt").count() > 0
    # Timestamps come in all three styles of the contract.
    styles = exposures.select(
        F.sum(F.col("ts").rlike("^[0-9]+$").cast("int")).alias("epoch"),
        F.sum(F.col("ts").endswith("Z").cast("int")).alias("utc"),
        F.sum(F.col("ts").endswith("+02:00").cast("int")).alias("offset")).first()
    assert min(styles) > 0


def test_parquet_and_gzip_outputs(spark, tmp_path):
    cfg = conf(tmp_path / "pq", "raw.format=parquet", "synth.days=1", "synth.exposures_per_day=2000")
    summary = generate(cfg, progress=False)
    manifest = read_manifest(cfg.truth_path)
    df = spark.read.parquet(cfg.raw_path("exposures"))
    assert df.count() == sum(totals(manifest, "exposures").values())
    assert "malformed" not in totals(manifest, "exposures")
    assert summary.exposures == 2000

    cfg = conf(tmp_path / "gz", "synth.gzip=true", "synth.days=1", "synth.exposures_per_day=2000")
    generate(cfg, progress=False)
    files = glob.glob(os.path.join(cfg.raw_path("exposures"), "dt=*", "*.jsonl.gz"))
    lines = sum(len(gzip.open(f, "rt").read().splitlines()) for f in files)
    assert lines == sum(totals(read_manifest(cfg.truth_path), "exposures").values())


def test_refuses_to_overwrite_foreign_data(tmp_path):
    real_logs = tmp_path / "raw" / "exposures" / "dt=2026-10-01"
    real_logs.mkdir(parents=True)
    (real_logs / "part-0.jsonl").write_text("{}\n")
    with pytest.raises(PipelineError, match="refusing to overwrite"):
        generate(conf(tmp_path, "synth.days=1", "synth.exposures_per_day=100"), progress=False)
    assert (real_logs / "part-0.jsonl").exists()


def test_rerun_replaces_its_own_output(tmp_path):
    cfg = conf(tmp_path, "synth.days=2", "synth.exposures_per_day=500")
    generate(cfg, progress=False)
    generate(load_config("conf/local.yaml", [f"storage.root={tmp_path}", "synth.days=1",
                                             "synth.exposures_per_day=500"]), progress=False)
    assert sorted(os.listdir(cfg.raw_path("exposures"))) == ["_SYNTHETIC", "dt=2026-10-01"]


def test_console_script_generates(tmp_path):
    result = subprocess.run(
        ["pipeline", "generate", "--conf", "conf/local.yaml", "--set", f"storage.root={tmp_path}",
         "--set", "synth.days=1", "--set", "synth.exposures_per_day=1000"],
        capture_output=True, text=True, env={**os.environ, "PATH": os.path.dirname(os.sys.executable) + ":" + os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("generate: 1,000 exposures over 1 days")
    assert os.path.isdir(tmp_path / "raw" / "exposures" / "dt=2026-10-01")
    bad = subprocess.run(["pipeline", "generate", "--set", "raw.format=delta"], capture_output=True, text=True,
                         env={**os.environ, "PATH": os.path.dirname(os.sys.executable) + ":" + os.environ["PATH"]})
    assert bad.returncode == 2
    assert bad.stderr.strip() == "pipeline generate: error: pipeline generate writes json or parquet, not raw.format=delta"


def test_truth_summary_reports_rates_and_oracle_aucs(world):
    from pipeline.synth.summary import truth_summary

    text = truth_summary(world[0].truth_path)
    assert "oracle AUC: CTR" in text and "oracle AUC: CVR on all exposures" in text
    assert "exposures    clean 90,000" in text
