"""import-aliccp on tiny files in the public byte format: exact samples and quarantine rows,
counts, idempotent re-import, split selection and errors.

The fixtures (``fixtures/``): train has 8 skeleton lines over 3 common-features lines. Samples
1-4 are valid (2 has two 508 features and c1 two 109_14 ones: the first in the line is kept; 4
converts without a click); 5 points at the malformed common line c3; 6 has no item (205); 7 has
a feature without its value; 8 has 4 columns. Test has 2 valid lines over c9, which appears twice.
"""
import datetime as dt
import os
import shutil

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from pipeline.aliccp import parse as P
from pipeline.aliccp.importer import import_aliccp
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.tables import QUARANTINE_SCHEMA, samples_schema

from tests.conftest import TEST_SPARK_SETTINGS

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
DAYS = P.SplitDays(start=dt.date(2030, 1, 1), train_days=1, test_days=1)
TRAIN_DAY, TEST_DAY = dt.date(2030, 1, 1), dt.date(2030, 1, 2)
ALICCP_FEATURES = [f"features.categorical=[{', '.join(P.AVAILABLE_FEATURES)}]", "features.numeric=[]"]


def make_cfg(root, *extra: str):
    return load_config(None, [f"storage.root={root}", *TEST_SPARK_SETTINGS, *ALICCP_FEATURES, *extra])


def fixture_lines(name: str) -> list[str]:
    with open(os.path.join(FIXTURES, name), encoding="utf-8", newline="") as fh:
        return fh.read().split("\n")[:-1]


def table(spark, cfg, name: str):
    return delta.read_table(spark, cfg.table_path(name))


@pytest.fixture(scope="module")
def imported(spark, tmp_path_factory):
    """One import of both splits; only the last test of the module writes to its tables again."""
    cfg = make_cfg(tmp_path_factory.mktemp("aliccp"))
    return cfg, import_aliccp(spark, cfg, FIXTURES, days=DAYS)


SAMPLE_COLUMNS = ["impression_id", "request_id", "user_id", "item_id", "position", "click", "conversion",
                  "conversion_value", "labels_final", "f_109_14", "f_150_14", "f_508", "f_125", "f_301", "dt"]


def sample(impression_id, request_id, user_id, item_id, click, conversion, f_109_14, f_150_14, f_508,
           f_125, f_301, day):
    return Row(impression_id=impression_id, request_id=request_id, user_id=user_id, item_id=item_id,
               position=None, click=click, conversion=conversion, conversion_value=0.0, labels_final=True,
               f_109_14=f_109_14, f_150_14=f_150_14, f_508=f_508, f_125=f_125, f_301=f_301, dt=day)


EXPECTED_SAMPLES = [
    sample("aliccp-train-1", "c1", "13001", "50001", 0, 0, "19002", None, "80002", "25001", "30001", TRAIN_DAY),
    sample("aliccp-train-2", "c1", "13001", "50002", 1, 0, "19002", None, "80002", "25001", "30001",
           TRAIN_DAY),
    sample("aliccp-train-3", "c2", "13002", "50001", 1, 1, None, "15002", "80002", None, "30001", TRAIN_DAY),
    # Conversion flag without a click: kept as a sample, the conversion is not counted.
    sample("aliccp-train-4", "c2", "13002", "50003", 0, 0, None, "15002", "80002", None, "30001", TRAIN_DAY),
    sample("aliccp-test-1", "c9", "13009", "50009", 0, 0, None, None, None, "25009", None, TEST_DAY),
    sample("aliccp-test-2", "c9", "13009", "50001", 1, 1, None, None, None, "25009", "30002", TEST_DAY),
]


def test_samples_are_exactly_the_valid_lines(spark, imported):
    cfg, _ = imported
    samples = table(spark, cfg, "samples")
    assertSchemaEqual(samples.schema, samples_schema(cfg.features))
    assertDataFrameEqual(samples.select(*SAMPLE_COLUMNS), EXPECTED_SAMPLES)
    assert samples.where(F.col("exposure_ts").isNotNull() | F.col("click_ts").isNotNull()).count() == 0


def test_every_field_lands_in_its_column(spark, imported):
    cfg, _ = imported
    row = table(spark, cfg, "samples").where(F.col("impression_id") == "aliccp-train-1").first()
    assert {name: row[name] for name in P.AVAILABLE_FEATURES} == {
        "user_id": "13001", "item_id": "50001",
        "f_101": "13001", "f_109_14": "19002", "f_110_14": None, "f_127_14": None, "f_150_14": None,
        "f_121": "21001", "f_122": "22001", "f_124": "24001", "f_125": "25001", "f_126": "26001",
        "f_127": "27001", "f_128": "28001", "f_129": "29001",
        "f_205": "50001", "f_206": "60001", "f_207": "70001", "f_210": "10001", "f_216": "16001",
        "f_508": "80002", "f_509": "90001", "f_702": "72001", "f_853": "85001", "f_301": "30001",
    }


def test_rejected_lines_are_quarantined_with_their_text(spark, imported):
    cfg, summary = imported
    skeleton, common = fixture_lines("sample_skeleton_train.csv"), fixture_lines("common_features_train.csv")
    quarantine = table(spark, cfg, "quarantine")
    assertSchemaEqual(quarantine.schema, QUARANTINE_SCHEMA)
    assertDataFrameEqual(quarantine.select("source", "reason", "raw", "dt", "run_id"), [
        Row(source="sample_skeleton_train", reason="missing_user_id", raw=skeleton[4], dt=TRAIN_DAY,
            run_id=summary.run_id),
        Row(source="sample_skeleton_train", reason="missing_item_id", raw=skeleton[5], dt=TRAIN_DAY,
            run_id=summary.run_id),
        Row(source="sample_skeleton_train", reason="malformed", raw=skeleton[6], dt=TRAIN_DAY, run_id=summary.run_id),
        Row(source="sample_skeleton_train", reason="malformed", raw=skeleton[7], dt=TRAIN_DAY, run_id=summary.run_id),
        Row(source="common_features_train", reason="malformed", raw=common[2], dt=TRAIN_DAY, run_id=summary.run_id),
    ])


def test_summary_counts_every_line(spark, imported):
    cfg, summary = imported
    assert summary.counts == {
        "train": {"lines": 8, "samples": 4, "clicks": 2, "conversions": 1, "conversion_without_click": 1,
                  "quarantined": 4, "common_lines": 3, "common_malformed": 1, "common_duplicates": 0},
        "test": {"lines": 2, "samples": 2, "clicks": 1, "conversions": 1, "conversion_without_click": 0,
                 "quarantined": 0, "common_lines": 2, "common_malformed": 0, "common_duplicates": 1},
    }
    assert summary.quarantined_by_reason == {"malformed": 3, "missing_user_id": 1, "missing_item_id": 1}
    assert summary.dates == [TRAIN_DAY, TEST_DAY]
    line = summary.line()
    assert "\n" not in line and "8 lines -> 4 samples" in line
    assert "1 conversion flag(s) without a click ignored" in line
    run = table(spark, cfg, "runs").where(F.col("run_id") == summary.run_id).first()
    assert (run["job"], run["status"], run["exposures_read"], run["exposures_accepted"],
            run["exposures_quarantined"], run["samples_rows"]) == ("import-aliccp", "succeeded", 10, 6, 4, 6)


def test_split_days_spread_lines_over_their_days(spark):
    days = P.SplitDays(start=dt.date(2030, 1, 1), train_days=3, test_days=2)
    ids = spark.range(3000).select(F.col("id").cast("string").alias("sample_id"))
    both = ids.select(F.lit("train").alias("split"), "sample_id").unionByName(
        ids.select(F.lit("test").alias("split"), "sample_id"))
    day_of = days.day_of(F.col("split"), F.col("sample_id"))
    spread = {(r["split"], r["day"]): r["count"] for r in
              both.select("split", day_of.alias("day")).groupBy("split", "day").count().collect()}
    assert sorted(spread) == [("test", dt.date(2030, 1, 4)), ("test", dt.date(2030, 1, 5)),
                              ("train", dt.date(2030, 1, 1)), ("train", dt.date(2030, 1, 2)),
                              ("train", dt.date(2030, 1, 3))]
    assert min(spread.values()) > 800  # roughly even: 1000 or 1500 expected per day
    again = both.select(day_of.alias("day")).collect()
    assert again == both.select(day_of.alias("day")).collect()  # stable: a re-import keeps each line's day


def test_missing_file_is_a_one_line_error(spark, tmp_path):
    source = tmp_path / "aliccp"
    shutil.copytree(FIXTURES, source)
    os.remove(source / "common_features_test.csv")
    cfg = make_cfg(tmp_path / "data")
    with pytest.raises(PipelineError, match=r"^missing input: no Ali-CCP file .*common_features_test\.csv$") as err:
        import_aliccp(spark, cfg, str(source), days=DAYS)
    assert "\n" not in str(err.value)
    assert not delta.is_table(spark, cfg.table_path("samples"))
    run = table(spark, cfg, "runs").first()
    assert (run["job"], run["status"], run["error"]) == ("import-aliccp", "failed", str(err.value))


def test_features_ali_ccp_cannot_fill_are_refused(spark, tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path}", *TEST_SPARK_SETTINGS])  # the synthetic features
    with pytest.raises(PipelineError, match=r"features \['position', 'category'.*'price', 'user_activity'\] cannot"):
        import_aliccp(spark, cfg, FIXTURES, days=DAYS)


def test_feature_lists_are_checked_feature_by_feature(spark):
    A, B, C = P.FIELD_SEP, P.ID_SEP, P.VALUE_SEP
    cases = [  # feature_list, feature_num, well-formed, first id of 127, first id of 127_14
        ("", "0", True, None, None),
        (f"127_14{B}7{C}1e-05{A}127{B}2{C}1{A}127{B}3{C}1.0", "3", True, "2", "7"),
        (f"127{B}2{C}1.0", "2", False, "2", None),         # fewer features than feature_num
        (f"127{B}2{C}1.0{A}", "1", False, "2", None),      # a trailing separator
        (f"{A}127{B}2{C}1.0", "2", False, "2", None),      # a leading separator
        (f"127{B}2{C}abc", "1", False, "2", None),         # a value that is not a float
        (f"127{B}{C}1.0", "1", False, None, None),         # an empty id
        (f"127{B}2{C}1.0{C}4", "1", False, "2", None),     # two values
        (f"127{B}2", "1", False, None, None),              # no value
        (f"1270{B}2{C}1.0", "1", True, None, None),        # another field
    ]
    frame = spark.createDataFrame([c[:2] for c in cases], "feature_list string, feature_num string")
    got = frame.select(P.is_feature_list(F.col("feature_list"), F.col("feature_num")).alias("ok"),
                       P.first_id(F.col("feature_list"), "127").alias("f_127"),
                       P.first_id(F.col("feature_list"), "127_14").alias("f_127_14"))
    assertDataFrameEqual(got, [Row(ok=c[2], f_127=c[3], f_127_14=c[4]) for c in cases], checkRowOrder=True)


def test_reimport_replaces_only_its_own_dates(spark, imported):
    """Runs last: it re-imports into the module's tables."""
    cfg, first = imported
    again = import_aliccp(spark, cfg, FIXTURES, days=DAYS, splits=["test"])
    assert again.samples_version > first.samples_version and again.counts["test"] == first.counts["test"]
    assert again.dates == [TEST_DAY] and list(again.counts) == ["test"]
    samples = table(spark, cfg, "samples")
    assertDataFrameEqual(samples.select(*SAMPLE_COLUMNS), EXPECTED_SAMPLES)
    run_ids = {r["dt"]: r["run_id"] for r in samples.select("dt", "run_id").distinct().collect()}
    assert run_ids == {TRAIN_DAY: first.run_id, TEST_DAY: again.run_id}
    assert table(spark, cfg, "quarantine").where(F.col("run_id") == first.run_id).count() == 5


def test_the_aliccp_conf_lists_only_fields_the_import_fills():
    cfg = load_config("conf/aliccp.yaml")
    assert set(cfg.features.categorical) <= set(P.AVAILABLE_FEATURES) and not cfg.features.numeric
    assert cfg.aliccp.train_days == 10 and cfg.model.tasks == ("ctr", "cvr")
