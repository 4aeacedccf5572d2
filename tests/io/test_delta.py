import datetime as dt
import os

import pytest
from pyspark.testing import assertDataFrameEqual

from pipeline.errors import PipelineError
from pipeline.io import delta

D1, D2, D3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)
SCHEMA = "id STRING, value INT, dt DATE"


def rows(spark, *items):
    return spark.createDataFrame(list(items), SCHEMA)


def test_replace_partitions_replaces_only_the_given_dates(spark, tmp_path):
    path = str(tmp_path / "t")
    v0 = delta.replace_partitions(rows(spark, ("a", 1, D1), ("b", 2, D2), ("c", 3, D3)), path, [D1, D2, D3])
    v1 = delta.replace_partitions(rows(spark, ("b2", 20, D2)), path, [D2])
    assert (v0, v1) == (0, 1)
    expected = rows(spark, ("a", 1, D1), ("b2", 20, D2), ("c", 3, D3))
    assertDataFrameEqual(delta.read_table(spark, path), expected)

    # Re-running the same write leaves the same rows (a new version, no duplicates).
    v2 = delta.replace_partitions(rows(spark, ("b2", 20, D2)), path, [D2])
    assert v2 == 2
    assertDataFrameEqual(delta.read_table(spark, path), expected)

    # Older versions stay readable.
    assertDataFrameEqual(delta.read_table(spark, path, version=0),
                         rows(spark, ("a", 1, D1), ("b", 2, D2), ("c", 3, D3)))
    assert delta.current_version(spark, path) == 2


def test_a_listed_date_without_rows_is_emptied(spark, tmp_path):
    path = str(tmp_path / "t")
    delta.replace_partitions(rows(spark, ("a", 1, D1), ("b", 2, D2)), path, [D1, D2])
    delta.replace_partitions(rows(spark, ("a", 9, D1)), path, [D1, D2])
    assertDataFrameEqual(delta.read_table(spark, path), rows(spark, ("a", 9, D1)))


def test_rows_outside_the_dates_fail_and_change_nothing(spark, tmp_path):
    path = str(tmp_path / "t")
    delta.replace_partitions(rows(spark, ("a", 1, D1)), path, [D1])
    with pytest.raises(Exception, match="(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        delta.replace_partitions(rows(spark, ("x", 5, D1), ("y", 6, D2)), path, [D1])
    assert delta.current_version(spark, path) == 0
    assertDataFrameEqual(delta.read_table(spark, path), rows(spark, ("a", 1, D1)))


def test_table_is_partitioned_by_dt(spark, tmp_path):
    path = str(tmp_path / "t")
    delta.replace_partitions(rows(spark, ("a", 1, D1)), path, [D1])
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail["partitionColumns"] == ["dt"]


def test_dates_predicate_takes_dates_only():
    assert delta.dates_predicate([D2, D1, D2]) == "dt IN (DATE'2026-10-01', DATE'2026-10-02')"
    with pytest.raises(TypeError):
        delta.dates_predicate(["2026-10-01' OR 1=1 --"])
    with pytest.raises(ValueError):
        delta.dates_predicate([])


def test_register_table_in_database(spark, tmp_path):
    path = str(tmp_path / "scores")
    delta.replace_partitions(rows(spark, ("a", 1, D1)), path, [D1])
    delta.register_table(spark, "mtrank_test", "scores", path)
    delta.register_table(spark, "mtrank_test", "scores", path)  # idempotent
    assertDataFrameEqual(spark.table("mtrank_test.scores"), rows(spark, ("a", 1, D1)))
    delta.replace_partitions(rows(spark, ("a", 2, D1)), path, [D1])
    assert spark.table("mtrank_test.scores").first()["value"] == 2  # by name and by path: one table
    with pytest.raises(PipelineError, match="bad catalog name"):
        delta.register_table(spark, "db; DROP", "scores", path)
    delta.register_table(spark, None, "scores", path)  # no database: nothing to do


def test_current_version_is_the_history_s_latest(spark, tmp_path):
    """The commit files' listing agrees with the table's history past a checkpoint (every 10
    commits by default; every 2 here), with the log's other files beside the commits (checksums,
    checkpoints)."""
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")
    assert delta.replace_partitions(rows(spark, ("r0", 0, D1)), path, [D1]) == 0
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")  # version 1
    for i in range(2, 4):
        assert delta.replace_partitions(rows(spark, (f"r{i}", i, D1)), path, [D1]) == i
    assert delta.insert_rows(rows(spark, ("new", 0, D2)), path, key="id") == 4
    assert delta.current_version(spark, path) == DeltaTable.forPath(spark, path).history(1).first()["version"] == 4
    assert any(name.endswith(".checkpoint.parquet") for name in os.listdir(os.path.join(path, "_delta_log")))
    with pytest.raises(PipelineError, match="no Delta table at"):
        delta.current_version(spark, str(tmp_path / "missing"))


def test_latest_commit_keeps_the_writes_user_metadata_as_the_history_does(spark, tmp_path):
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")
    assert delta.latest_commit(spark, path) is None
    assert delta.replace_partitions(rows(spark, ("r0", 0, D1)), path, [D1], user_metadata="training set ab12") == 0
    assert delta.latest_commit(spark, path) == (0, "training set ab12")
    assert DeltaTable.forPath(spark, path).history(1).first()["userMetadata"] == "training set ab12"
    assert delta.replace_partitions(rows(spark, ("r1", 1, D1)), path, [D1]) == 1
    assert delta.latest_commit(spark, path) == (1, None)


def test_read_table_on_a_missing_table(spark, tmp_path):
    with pytest.raises(PipelineError, match="no Delta table at"):
        delta.read_table(spark, str(tmp_path / "missing"))


def test_concurrent_writes_of_the_same_partitions_are_retried(spark, tmp_path):
    """Two runs replacing the same dates at once: Delta lets one commit first and fails the other
    with a conflict; the loser writes again, and the table holds one copy of the rows."""
    import threading

    path = str(tmp_path / "t")
    delta.replace_partitions(rows(spark, ("a", 1, D1)), path, [D1])
    errors = []

    def write(value):
        try:
            delta.replace_partitions(rows(spark, ("a", value, D1), ("b", value, D1)), path, [D1])
        except Exception as err:  # noqa: BLE001 - collected for the assertion below
            errors.append(err)

    writers = [threading.Thread(target=write, args=(value,)) for value in (10, 20)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    final = delta.read_table(spark, path).collect()
    assert len(final) == 2 and len({r["value"] for r in final}) == 1


def test_a_conflict_that_persists_is_one_line():
    from pipeline.errors import RunFailure

    class ConcurrentAppendException(Exception):
        pass

    def always_conflicting():
        raise ConcurrentAppendException("[DELTA_CONCURRENT_APPEND] Files were added to partition [dt=2026-10-01] ...")

    with pytest.raises(RunFailure, match=r"another run kept writing /t at the same time \(Delta ConcurrentAppendException, "
                                         r"2 attempts\); run again"):
        delta.retry_conflicts(always_conflicting, "/t", attempts=2)
    with pytest.raises(ValueError):
        delta.retry_conflicts(lambda: (_ for _ in ()).throw(ValueError("not a conflict")), "/t")
