"""build-samples on generated data with dirt: reconciliation, labels against the truth,
idempotency, late data, errors, formats and spark-submit."""
import datetime as dt
import os
import shutil
import subprocess
import sys

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.logs import schema
from pipeline.spark import delta_jar_settings, ivy_dir
from pipeline.synth.generate import generate, read_manifest

from tests.conftest import TEST_SPARK_SETTINGS, set_args
from tests.samples.conftest import backfill, make_cfg, nightly, table, without_run_id

# Conversions 36 h after their click on average: many arrive days after their exposure's night.
GENERATED = ["synth.days=8", "synth.exposures_per_day=4000", "synth.cvr=0.3", "synth.conversion_delay_hours=36",
             "synth.dirt.orphan=0.02", "synth.dirt.before_parent=0.02", "synth.dirt.negative_value=0.02"]
START, END = "2026-10-01", "2026-10-08"


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    """Eight generated days, backfilled once; 2026-10-01..04 are final."""
    cfg = make_cfg(tmp_path_factory.mktemp("generated"), *GENERATED)
    generate(cfg, progress=False)
    summary = backfill(spark, cfg, START, END)
    return cfg, summary


def manifest_counts(cfg, source, first, last):
    """Generated lines of ``source`` per expected outcome over event dates [first, last]."""
    counts = {}
    for day, per_reason in read_manifest(cfg.truth_path)["lines"][source].items():
        if first <= day <= last:
            for reason, n in per_reason.items():
                counts[reason] = counts.get(reason, 0) + n
    return counts


def test_reconciliation_matches_the_generator_exactly(spark, generated):
    cfg, summary = generated
    quarantine = table(spark, cfg, "quarantine")
    for source in schema.SOURCES:
        expected = manifest_counts(cfg, source, START, END)
        got = summary.counts[source]
        assert got["read"] == sum(expected.values()), source
        assert got["read"] == got["accepted"] + got["duplicates"] + got["quarantined"] + got["out_of_range"]
        assert got["accepted"] == expected["clean"], source
        assert got["duplicates"] == expected["duplicate"], source
        by_reason = {r["reason"]: r["count"] for r in
                     quarantine.where(F.col("source") == source).groupBy("reason").count().collect()}
        parent_reasons = (schema.UNKNOWN_PARENT.get(source), schema.BEFORE_PARENT.get(source))
        for reason, n in expected.items():
            if reason not in ("clean", "duplicate", *parent_reasons):
                assert by_reason.get(reason, 0) == n, (source, reason)
        # A child on the run's last date whose parent is missing may still get it the day after.
        expected_parent = sum(expected.get(r, 0) for r in parent_reasons if r)
        got_parent = sum(by_reason.get(r, 0) for r in parent_reasons if r)
        assert got_parent + got["out_of_range"] == expected_parent, source
        before_end = manifest_counts(cfg, source, START, "2026-10-07")
        got_before_end = {r["reason"]: r["count"] for r in quarantine.where(
            (F.col("source") == source) & (F.col("dt") < dt.date(2026, 10, 8))).groupBy("reason").count().collect()}
        for reason in parent_reasons:
            if reason:
                assert got_before_end.get(reason, 0) == before_end.get(reason, 0), (source, reason)


def test_final_labels_equal_the_truth_for_every_impression(spark, generated):
    cfg, _ = generated
    samples = table(spark, cfg, "samples")
    truth = spark.read.parquet(cfg.truth_path)
    joined = samples.alias("s").join(truth.alias("t"), on="impression_id", how="full_outer")
    assert joined.where("s.dt IS NULL OR t.dt IS NULL").count() == 0  # one sample per clean exposure
    final = joined.where("s.labels_final")
    assert final.select("s.dt").distinct().count() == 4
    mismatched = final.where("s.click != t.click OR s.conversion != t.conversion "
                             "OR abs(s.conversion_value - t.conversion_value) > 1e-6")
    assert mismatched.count() == 0
    assert final.where("s.conversion = 1").count() > 50
    # Partitions still open only lack labels that have not arrived yet.
    open_ = joined.where("NOT s.labels_final")
    assert open_.where("s.click > t.click OR s.conversion > t.conversion").count() == 0
    assert samples.groupBy("impression_id").count().where("count > 1").count() == 0


@pytest.mark.slow
def test_same_run_twice_gives_identical_tables(spark, generated):
    cfg, first = generated
    samples_before = without_run_id(table(spark, cfg, "samples", first.samples_version))
    quarantine_before = without_run_id(table(spark, cfg, "quarantine", first.quarantine_version))
    second = backfill(spark, cfg, START, END)
    assertDataFrameEqual(without_run_id(table(spark, cfg, "samples", second.samples_version)), samples_before)
    assertDataFrameEqual(without_run_id(table(spark, cfg, "quarantine", second.quarantine_version)), quarantine_before)
    assert second.counts == first.counts

    # A nightly run for the last date agrees with the backfill on every partition.
    third = nightly(spark, cfg, END)
    assert (third.dates.start, third.dates.end) == (dt.date(2026, 10, 4), dt.date(2026, 10, 8))
    assertDataFrameEqual(without_run_id(table(spark, cfg, "samples", third.samples_version)), samples_before)
    assertDataFrameEqual(without_run_id(table(spark, cfg, "quarantine", third.quarantine_version)),
                         quarantine_before)
    # Older versions stay readable.
    assert table(spark, cfg, "samples", first.samples_version).count() == samples_before.count()


def test_bad_inputs_fail_with_a_clear_message(spark, tmp_path):
    cfg = make_cfg(tmp_path, "synth.days=2", "synth.exposures_per_day=200")
    generate(cfg, progress=False)
    with pytest.raises(PipelineError, match=r"missing input: no exposures for 2026-10-03 at .*exposures/dt=2026-10-03"):
        backfill(spark, cfg, "2026-10-01", "2026-10-03")
    with pytest.raises(PipelineError, match=r"feature 'nope' is present on 0 of \d+ valid exposures of 2026-10-01"):
        backfill(spark, make_cfg(tmp_path, "features.categorical=[user_id, nope]"), "2026-10-01", "2026-10-02")
    with pytest.raises(PipelineError, match=r"missing input: no exposures for 2026-10-02 .*\(and 2 more source-date"):
        backfill(spark, make_cfg(tmp_path / "nothing-here"), "2026-10-01", "2026-10-02")
    runs = sorted(table(spark, cfg, "runs").collect(), key=lambda r: r["started_at"])
    assert [r["status"] for r in runs] == ["failed", "failed"]
    assert runs[0]["error"].startswith("missing input") and runs[1]["error"].startswith("suspicious input: feature")
    assert not delta.is_table(spark, cfg.table_path("samples"))  # nothing written


@pytest.mark.slow
def test_incomplete_input_is_refused_before_anything_is_written(spark, tmp_path):
    """A missing source, a missing success marker, a renamed field, a dropped feature column:
    each is one line naming the source and date, and the tables keep their version."""
    cfg = make_cfg(tmp_path, "synth.days=3", "synth.exposures_per_day=300")
    generate(cfg, progress=False)
    good = backfill(spark, cfg, "2026-10-01", "2026-10-03")

    def refused(pattern, *settings):
        before = delta.current_version(spark, cfg.table_path("samples"))
        with pytest.raises(PipelineError, match=pattern):
            backfill(spark, make_cfg(tmp_path, *settings), "2026-10-01", "2026-10-03")
        assert delta.current_version(spark, cfg.table_path("samples")) == before

    clicks = cfg.raw_path("clicks")
    moved = str(tmp_path / "clicks-moved")
    os.rename(clicks, moved)  # the clicks source points at a folder that does not exist
    refused(r"missing input: no clicks for 2026-10-01 at .*clicks/dt=2026-10-01 \(and 2 more")
    os.rename(moved, clicks)
    shutil.rmtree(os.path.join(cfg.raw_path("conversions"), "dt=2026-10-02"))
    refused(r"missing input: no conversions for 2026-10-02 .*add it to raw.may_be_empty")
    allowed = backfill(spark, make_cfg(tmp_path, "raw.may_be_empty=[conversions]"), "2026-10-01", "2026-10-03")
    assert allowed.counts["exposures"] == good.counts["exposures"]

    open(os.path.join(clicks, "dt=2026-10-03", "_SUCCESS"), "w").close()
    refused(r"incomplete input: clicks for 2026-10-01 has no _SUCCESS .*raw.success_markers.clicks",
            "raw.may_be_empty=[conversions]", "raw.success_markers.clicks=_SUCCESS")

    # A required field renamed in one day's exposures: every record of that day goes to quarantine.
    day = os.path.join(cfg.raw_path("exposures"), "dt=2026-10-02")
    for name in os.listdir(day):
        path = os.path.join(day, name)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text.replace('"user_id"', '"uid"'))
    refused(r"suspicious input: 3\d\d of 3\d\d exposures records of 2026-10-02 would go to quarantine "
            r"\(\d+% > raw.max_quarantined_share 25%\)", "raw.may_be_empty=[conversions]")
    # The same day without a declared feature column: valid records, but the column is gone.
    for name in os.listdir(day):
        path = os.path.join(day, name)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text.replace('"uid"', '"user_id"').replace('"brand"', '"brand_v2"'))
    refused(r"suspicious input: feature 'brand' is present on 0 of \d+ valid exposures of 2026-10-02",
            "raw.may_be_empty=[conversions]")


@pytest.mark.slow
def test_late_conversions_update_earlier_partitions_and_a_missed_night_heals(spark, generated, tmp_path):
    """Nights D and D+2 (D+1 missed): the conversions of an earlier day that arrive late reach its
    partition until it is final, with the generator's true labels; and the tables are exactly those
    of a backfill to D+2."""
    source, _ = generated
    raw = [f"raw.{s}={source.raw_path(s)}" for s in schema.SOURCES]
    nights, backfilled = make_cfg(tmp_path / "nights", *raw), make_cfg(tmp_path / "backfill", *raw)
    day = dt.date(2026, 10, 3)  # final from the night of 10-07 on (attribution window 3 days)

    def conversions_of_day():
        partition = table(spark, nights, "samples").where(F.col("dt") == day)
        return (partition.agg(F.sum("conversion")).first()[0],
                [r[0] for r in partition.select("labels_final").distinct().collect()])

    first = nightly(spark, nights, "2026-10-05")
    assert (first.dates.start, first.dates.end) == (dt.date(2026, 10, 1), dt.date(2026, 10, 5))
    early, final_then = conversions_of_day()
    healed = nightly(spark, nights, "2026-10-07")  # 2026-10-06 never ran
    assert (healed.dates.start, healed.dates.end) == (dt.date(2026, 10, 2), dt.date(2026, 10, 7))
    late, final_now = conversions_of_day()
    truth = spark.read.parquet(source.truth_path).where(F.col("dt") == day).agg(F.sum("conversion")).first()[0]
    assert (final_then, final_now) == ([False], [True])
    assert early < late == truth

    backfill(spark, backfilled, "2026-10-01", "2026-10-07")
    for name in ("samples", "quarantine"):
        assertDataFrameEqual(without_run_id(table(spark, nights, name)), without_run_id(table(spark, backfilled, name)))
    final = table(spark, nights, "samples").where("labels_final").select("dt").distinct().count()
    assert final == 3  # 2026-10-01..03, as after a backfill to 2026-10-07


def test_healing_start():
    from pipeline.samples.labels import healing_start

    labels = make_cfg("unused").labels  # lookback 4 days, max_rebuild_days 30
    day, d = dt.date(2026, 10, 20), lambda n: dt.date(2026, 10, n)
    assert healing_start(day, {}, labels) == d(16)  # first night: the usual lookback
    every_night = {d(n): n <= 15 for n in range(1, 20)}
    assert healing_start(day, every_night, labels) == d(16)
    assert healing_start(day, {**every_night, d(12): False}, labels) == d(12)  # a night missed
    missing = {k: v for k, v in every_night.items() if k not in (d(13), d(14))}
    assert healing_start(day, missing, labels) == d(13)  # partitions never built
    assert healing_start(day, {d(n): False for n in range(5, 20)}, labels) == d(5)  # logs begin on 5
    long_ago = {dt.date(2026, 9, 1) + dt.timedelta(days=n): False for n in range(50)}
    assert healing_start(day, long_ago, labels) == day - dt.timedelta(days=30)  # bounded


def test_failed_run_leaves_the_previous_version(spark, tmp_path):
    cfg = make_cfg(tmp_path, "synth.days=2", "synth.exposures_per_day=300")
    generate(cfg, progress=False)
    good = backfill(spark, cfg, "2026-10-01", "2026-10-02")
    before = table(spark, cfg, "samples").collect()
    # A run whose samples no longer fit the table (price became categorical) fails at the write.
    changed = make_cfg(tmp_path, "features.categorical=[user_id, item_id, price]", "features.numeric=[]")
    with pytest.raises(Exception, match="(?i)merge|schema"):
        backfill(spark, changed, "2026-10-01", "2026-10-02")
    assert sorted(table(spark, cfg, "samples").collect()) == sorted(before)
    assert delta_version(spark, cfg) == good.samples_version
    runs = sorted(table(spark, cfg, "runs").collect(), key=lambda r: r["started_at"])
    assert [r["status"] for r in runs] == ["succeeded", "failed"]


def delta_version(spark, cfg):
    from pipeline.io.delta import current_version

    return current_version(spark, cfg.table_path("samples"))


@pytest.mark.slow
def test_parquet_and_gzip_sources(spark, tmp_path):
    for name, extra in (("parquet", "raw.format=parquet"), ("gzip", "synth.gzip=true")):
        cfg = make_cfg(tmp_path / name, "synth.days=2", "synth.exposures_per_day=500", extra)
        generate(cfg, progress=False)
        summary = backfill(spark, cfg, "2026-10-01", "2026-10-02")
        expected = manifest_counts(cfg, "exposures", "2026-10-01", "2026-10-02")
        assert summary.counts["exposures"]["read"] == sum(expected.values()), name
        assert summary.samples_rows == 1000, name
        if name == "parquet":  # the same logs as Delta tables with a dt column
            paths = {}
            for source in schema.SOURCES:
                paths[source] = str(tmp_path / "delta-raw" / source)
                spark.read.parquet(cfg.raw_path(source)).write.format("delta").partitionBy("dt").save(paths[source])
            as_delta = make_cfg(tmp_path / "from-delta", "raw.format=delta",
                                *[f"raw.{source}={path}" for source, path in paths.items()])
            from_delta = backfill(spark, as_delta, "2026-10-01", "2026-10-02")
            assert from_delta.counts == summary.counts


@pytest.mark.slow
def test_cli_and_spark_submit(spark, spark_cfg, tmp_path):
    cfg = make_cfg(tmp_path, "synth.days=2", "synth.exposures_per_day=300")
    generate(cfg, progress=False)
    sets = set_args(f"storage.root={tmp_path}")
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "build-samples", *sets, "--date", "2026-10-32"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "pipeline build-samples: error: bad --date: '2026-10-32' (expected a date YYYY-MM-DD)"
    backwards = subprocess.run([sys.executable, "-m", "pipeline.cli", "build-samples", *sets,
                                "--start", "2026-10-02", "--end", "2026-10-01"], capture_output=True, text=True)
    assert backwards.returncode == 2 and "end 2026-10-01 is before start 2026-10-02" in backwards.stderr

    jars = delta_jar_settings(spark_cfg, ivy_dir())["spark.jars"]
    submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    result = subprocess.run(
        [submit, "--master", "local[2]", "--jars", jars, "jobs/build_samples.py", "--conf", "conf/local.yaml",
         *sets, *set_args(*TEST_SPARK_SETTINGS), "--date", "2026-10-02"],
        capture_output=True, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("build-samples nightly 2026-09-28..2026-10-02: ")
    assert table(spark, cfg, "samples").count() == 600
