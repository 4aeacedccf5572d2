"""The Petastorm data path on real Delta tables: exactly once per epoch across ranks, pinned
versions, empty shards, and the batches the training loop takes."""
import contextlib
import datetime as dt
import functools
import glob
import os

import numpy as np
import pytest
import torch
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.data.reader import (Columns, DataFile, assign_row_groups, files_of, open_batches, petastorm_uri,
                                  read_batches, rebatch, row_group_rows, shard_batches, shard_rows, snapshot_files,
                                  snapshot_files_by_day, to_arrays)
from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.training.backends import BACKENDS

from tests.training.test_backends import check_probe, probe

D1, D2, D3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)
LABELS = ("click", "conversion", "conversion_value")
TOTAL = 1751
ALL_IDS = [f"i{n:06d}" for n in range(TOTAL)]
COLUMNS = Columns(cat=("cat_a", "cat_b"), num=("num_x", "num_y", "num_z"), labels=LABELS, keys=("impression_id",))


def encoded_rows(spark, first: int, count: int, days: tuple[dt.date, ...]):
    """``count`` training-set rows with ids ``first..``, spread over ``days``; every value is a
    function of the id, so a batch can be checked against its keys."""
    n = F.col("id")
    day = F.element_at(F.array(*[F.lit(d) for d in days]), (n % len(days) + 1).cast("int"))
    return spark.range(first, first + count).select(
        F.format_string("i%06d", n).alias("impression_id"),
        F.format_string("u%d", n % 17).alias("user_id"),
        (n % 2).cast("int").alias("click"),
        (n % 3 == 0).cast("int").alias("conversion"),
        (n * 0.5).cast("float").alias("conversion_value"),
        (n % 13).cast("int").alias("cat_a"),
        (n % 7).cast("int").alias("cat_b"),
        (n / 10).cast("float").alias("num_x"),
        (-n).cast("float").alias("num_y"),
        F.lit(1.5).cast("float").alias("num_z"),
        day.alias("dt"))


def number(ids: np.ndarray) -> np.ndarray:
    return np.array([int(i[1:]) for i in ids])


@contextlib.contextmanager
def row_groups_of(spark, rows: int):
    """Parquet row groups of ``rows`` rows on writes inside the block (the session conf reaches
    the Parquet writer; Delta ignores per-write Parquet options)."""
    settings = {"parquet.block.size": "1024", "parquet.block.size.row.check.min": str(rows),
                "parquet.block.size.row.check.max": str(rows)}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key in settings:
            spark.conf.unset(key)


@pytest.fixture(scope="module")
def uneven(spark, tmp_path_factory):
    """A table of 1,751 rows (odd: two shards cannot be equal) over D1 and D2 in one write of three
    tasks: files of ids 0..100 (51 and 50 rows), 101..700 (300 each), 701..1750 (525 each), in
    row groups of 64 rows."""
    path = str(tmp_path_factory.mktemp("uneven") / "training_set")
    tasks = [encoded_rows(spark, first, count, (D1, D2)).coalesce(1)
             for first, count in ((0, 101), (101, 600), (701, TOTAL - 701))]
    with row_groups_of(spark, 64):
        delta.replace_partitions(functools.reduce(DataFrame.union, tasks), path, [D1, D2])
    version = delta.current_version(spark, path)
    return path, version, snapshot_files(spark, path, version, [D1, D2])


def read_ids(files, rank: int, size: int, **options) -> np.ndarray:
    with open_batches(files, columns=COLUMNS, rank=rank, size=size, **options) as batches:
        parts = [batch["impression_id"] for batch in batches]
    return np.concatenate(parts) if parts else np.array([], dtype=str)


def test_petastorm_uri_decodes_spark_paths_and_keeps_other_schemes():
    assert petastorm_uri("file:/tmp/a%20b/dt=2026-10-01/p.parquet") == "file:///tmp/a b/dt=2026-10-01/p.parquet"
    assert petastorm_uri("/tmp/t/p.parquet") == "file:///tmp/t/p.parquet"
    assert petastorm_uri("s3://bucket/t/dt=2026-10-01/p.parquet") == "s3://bucket/t/dt=2026-10-01/p.parquet"
    assert petastorm_uri("hdfs://nn:8020/t/p.parquet") == "hdfs://nn:8020/t/p.parquet"


def test_row_groups_go_round_robin_over_ranks():
    assert assign_row_groups([64, 64, 10, 100, 100], 2) == [174, 164]
    assert assign_row_groups([5, 7], 4) == [5, 7, 0, 0]
    assert assign_row_groups([], 3) == [0, 0, 0]


def test_snapshot_files_are_the_active_files_of_the_days(spark, uneven):
    path, version, files = uneven
    assert [f.uri for f in files] == sorted(f.uri for f in files)
    assert all(f.uri.startswith("file:///") for f in files)
    assert sum(f.rows for f in files) == TOTAL
    assert sorted(f.rows for f in files) == [50, 51, 300, 300, 525, 525]
    only_d2 = snapshot_files(spark, path, version, [D2])
    assert sum(f.rows for f in only_d2) == TOTAL // 2  # odd ids
    assert {f.uri for f in only_d2} < {f.uri for f in files}
    assert snapshot_files(spark, path, version, [D3]) == []
    # Listed once for several days: the same files, day by day.
    by_day = snapshot_files_by_day(spark, path, version, [D1, D2, D3])
    assert list(by_day[D2]) == only_d2 and by_day[D3] == ()
    assert files_of(by_day, [D1, D2]) == files == snapshot_files(spark, path, version, [D2, D1, D2])


def test_two_shards_read_every_row_once_per_epoch(uneven):
    _, _, files = uneven
    predicted = shard_rows(files, 2)
    assert sum(predicted) == TOTAL and predicted[0] != predicted[1]
    for trial in range(10):
        shards = [read_ids(files, rank, 2, batch_size=97, shuffle=True, seed=trial, epoch=trial % 3,
                           buffer_rows=300, workers_count=1 + trial % 2) for rank in (0, 1)]
        assert [len(s) for s in shards] == predicted
        assert sorted(np.concatenate(shards).tolist()) == ALL_IDS


def test_shuffled_order_follows_seed_and_epoch(uneven):
    _, _, files = uneven

    def order(seed: int, epoch: int) -> list[str]:
        return read_ids(files, 0, 1, batch_size=128, shuffle=True, seed=seed, epoch=epoch,
                        buffer_rows=500, workers_count=1).tolist()

    first = order(7, 0)
    assert order(7, 0) == first
    assert order(7, 1) != first and sorted(order(7, 1)) == sorted(first)
    assert first != sorted(first)


def read_shard_then_probe(backend: str, files: list[DataFile], columns: Columns, batch_size: int) -> dict:
    """One rank's epoch: its ids and batch count; then the collectives of
    tests/training/test_backends.py's ``probe`` in the same job (top-level so Spark can ship it)."""
    ranks = BACKENDS[backend].ranks()
    with open_batches(files, columns=columns, batch_size=batch_size, rank=ranks.rank, size=ranks.size,
                      shuffle=True, seed=3, epoch=1) as batches:
        parts = [batch["impression_id"] for batch in batches]
    return {"batches": len(parts), "ids": np.concatenate(parts).tolist(), "probe": probe(backend)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_read_every_row_once(spark, uneven, backend, tmp_path):
    _, _, files = uneven
    results = BACKENDS[backend].run(read_shard_then_probe, num_proc=2, args=(backend, files, COLUMNS, 100),
                                    error_dir=str(tmp_path))
    check_probe([r["probe"] for r in results])  # ranks 0 and 1, in order
    assert [len(r["ids"]) for r in results] == shard_rows(files, 2)
    assert [r["batches"] for r in results] == shard_batches(files, 2, 100)
    assert sorted(results[0]["ids"] + results[1]["ids"]) == ALL_IDS


def test_a_pinned_version_reads_that_version_only(spark, tmp_path):
    path = str(tmp_path / "training_set")
    v0 = delta.replace_partitions(encoded_rows(spark, 0, 400, (D1, D2)).repartition(2), path, [D1, D2])
    v1 = delta.replace_partitions(encoded_rows(spark, 1000, 30, (D1,)).coalesce(1), path, [D1])
    old, new = snapshot_files(spark, path, v0, [D1, D2]), snapshot_files(spark, path, v1, [D1, D2])
    on_disk = glob.glob(os.path.join(path, "dt=*", "*.parquet"))
    assert len(new) < len(old) < len(on_disk)  # the folder still holds v0's replaced files

    current = [f"i{n:06d}" for n in range(400) if n % 2 == 1] + [f"i{n:06d}" for n in range(1000, 1030)]
    assert sorted(read_ids(new, 0, 1, batch_size=64).tolist()) == current
    assert sorted(read_ids(old, 0, 1, batch_size=64).tolist()) == [f"i{n:06d}" for n in range(400)]


def test_more_ranks_than_row_groups_leaves_ranks_empty_and_reads_all(uneven):
    _, _, files = uneven
    pair = sorted(files, key=lambda f: f.rows)[:2]  # ids 0..100: one row group in each file
    assert len(row_group_rows(pair)) == 2
    rows = [f.rows for f in pair]
    assert shard_rows(pair, 4) == [*rows, 0, 0]
    assert shard_batches(pair, 4, 10) == [-(-rows[0] // 10), -(-rows[1] // 10), 0, 0]
    shards = [read_ids(pair, rank, 4, batch_size=10, shuffle=True) for rank in range(4)]
    assert [len(s) for s in shards] == [*rows, 0, 0]
    assert sorted(np.concatenate(shards).tolist()) == ALL_IDS[:101]


def test_an_empty_snapshot_reads_nothing():
    assert shard_rows([], 2) == [0, 0]
    assert list(read_batches([], columns=COLUMNS, batch_size=8, rank=1, size=2)) == []


def test_a_file_with_rows_the_snapshot_does_not_count_is_refused(uneven):
    _, _, files = uneven
    with pytest.raises(PipelineError, match="deletion vectors"):
        row_group_rows([DataFile(uri=files[0].uri, rows=files[0].rows - 1)])


def test_batches_have_the_training_layout(uneven):
    _, _, files = uneven
    batches = list(read_batches(files, columns=COLUMNS, batch_size=128))
    assert [len(b["click"]) for b in batches[:-1]] == [128] * (len(batches) - 1)
    assert len(batches[-1]["click"]) == TOTAL - 128 * (len(batches) - 1)
    first = batches[0]
    assert first["cat"].dtype == torch.int64 and first["cat"].shape == (128, 2)
    assert first["num"].dtype == torch.float32 and first["num"].shape == (128, 3)
    for name in LABELS:
        assert first[name].dtype == torch.float32 and first[name].shape == (128,)
    for batch in batches:
        n = number(batch["impression_id"])
        np.testing.assert_array_equal(batch["cat"].numpy(), np.stack([n % 13, n % 7], axis=1))
        np.testing.assert_allclose(batch["num"].numpy(), np.stack([n / 10, -n, np.full(len(n), 1.5)], axis=1),
                                   rtol=1e-6)
        np.testing.assert_array_equal(batch["click"].numpy(), n % 2)
        np.testing.assert_array_equal(batch["conversion"].numpy(), n % 3 == 0)
        np.testing.assert_allclose(batch["conversion_value"].numpy(), n * 0.5)


def test_to_arrays_stacks_columns_in_order():
    chunk = {"impression_id": np.array(["a", "b"]), "click": np.array([1, 0], dtype=np.int32),
             "conversion": np.array([0, 0], dtype=np.int32), "conversion_value": np.array([2.5, 0.0]),
             "cat_a": np.array([3, 4], dtype=np.int32), "cat_b": np.array([5, 6], dtype=np.int32),
             "num_x": np.array([0.5, 1.5]), "num_y": np.array([1.0, 2.0], dtype=np.float32),
             "num_z": np.array([0.0, 0.0])}
    arrays = to_arrays(chunk, COLUMNS)
    np.testing.assert_array_equal(arrays["cat"], [[3, 5], [4, 6]])
    assert arrays["cat"].dtype == np.int64 and arrays["num"].dtype == np.float32
    assert arrays["num"].shape == (2, 3) and arrays["click"].dtype == np.float32
    empty = to_arrays(chunk, Columns(cat=(), num=(), labels=LABELS))
    assert empty["cat"].shape == (2, 0) and empty["num"].shape == (2, 0)


@pytest.mark.parametrize("shuffled", [False, True])
def test_rebatch_cuts_chunks_into_exact_batches(shuffled):
    sizes, start, chunks = (5, 17, 3, 40, 1), 0, []
    for size in sizes:
        chunks.append({"id": np.arange(start, start + size), "x": np.ones((size, 2))})
        start += size
    rng = np.random.default_rng(0) if shuffled else None
    batches = list(rebatch(iter(chunks), 8, buffer_rows=20, rng=rng))
    assert [len(b["id"]) for b in batches] == [8] * 8 + [2]
    ids = np.concatenate([b["id"] for b in batches])
    assert sorted(ids.tolist()) == list(range(66))
    assert (ids.tolist() != list(range(66))) == shuffled
