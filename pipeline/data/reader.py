"""Training batches read through Petastorm: the one module that calls Petastorm.

The trainer pins the ``training_set`` version, lists that snapshot's active Parquet files
(``snapshot_files``; never a directory scan, since a Delta folder keeps files that are no longer
part of the table) and hands the list to Petastorm. Each training rank reads its own shard,
whichever backend started it (``training.backend``).

How Petastorm 0.12.1 shards a list of files (``Reader._partition_row_groups``): it numbers the row
groups in list order, file by file, and within a file by row-group index; rank ``r`` of ``size``
reads the row groups whose number ``g`` has ``g % size == r``. The ``seed`` only reorders that list
before the filter, which tests the number, not the position, so the assignment does not depend on
the seed. With fewer row groups than ranks Petastorm raises ``NoDataAvailableError`` on every rank,
including ranks that would have had data. So ``shard_rows`` computes each rank's rows from the
Parquet footers before reading (ranks equalise their steps with it), and ``open_batches`` opens
Petastorm with ``min(size, row groups)`` shards and reads nothing on the ranks beyond: the same
assignment, without the error.

Shape notation: B batch rows, F categorical features, M numeric features.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import re
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow.parquet as pq  # before torch: Petastorm's advice for pyarrow and torch together
import torch
from pyspark.sql import SparkSession

from pipeline.errors import PipelineError
from pipeline.features.encoders import Encoders
from pipeline.io import delta

Arrays = dict[str, np.ndarray]
Batch = dict[str, Union[torch.Tensor, np.ndarray]]

DEFAULT_BUFFER_ROWS = 100_000


@dataclass(frozen=True)
class DataFile:
    """One active Parquet file of a table snapshot.

    Attributes:
        uri: the file's URI as Petastorm takes it (``file:///...`` for local files).
        rows: the rows the snapshot holds in the file.
    """

    uri: str
    rows: int


@dataclass(frozen=True)
class Columns:
    """The columns a batch is built from.

    Attributes:
        cat: ``cat_*`` columns, stacked in this order into ``cat`` [B, F] int64.
        num: ``num_*`` columns, stacked in this order into ``num`` [B, M] float32.
        labels: label columns, each a [B] float32 entry of its own name.
        keys: columns passed through as [B] numpy arrays (e.g. ``impression_id``), not tensors.
    """

    cat: tuple[str, ...]
    num: tuple[str, ...]
    labels: tuple[str, ...]
    keys: tuple[str, ...] = ()

    @classmethod
    def for_encoders(cls, encoders: Encoders, labels: Sequence[str], keys: Sequence[str] = ()) -> "Columns":
        """The encoded feature columns of ``encoders`` (in the model's field order)."""
        return cls(cat=encoders.cat_columns, num=encoders.num_columns, labels=tuple(labels), keys=tuple(keys))

    @property
    def read(self) -> tuple[str, ...]:
        """Every column read from the files."""
        return (*self.keys, *self.labels, *self.cat, *self.num)


def petastorm_uri(uri: str) -> str:
    """A file URI as Spark reports it (``file:/a%20b/x.parquet``) in the form Petastorm opens
    (``file:///a b/x.parquet``): Spark percent-encodes the path, Petastorm uses it verbatim.

    A path without a scheme is taken as local. Other schemes (``s3://``, ``hdfs://``) keep their
    scheme and host.
    """
    parsed = urlparse(uri)
    scheme = parsed.scheme or "file"
    return f"{scheme}://{parsed.netloc}{unquote(parsed.path)}"


def snapshot_files(spark: SparkSession, path: str, version: int, days: Iterable[dt.date]) -> list[DataFile]:
    """The active Parquet files of the Delta table at ``path`` pinned at ``version``, restricted
    to the ``dt`` partitions in ``days``, with the rows of each.

    Args:
        spark: the session.
        path: the table's location.
        version: the Delta version to read (time travel).
        days: the ``dt`` partitions wanted.

    Returns:
        The files sorted by URI (the order fixes the shard assignment); empty when the days hold
        no rows.
    """
    days = tuple(days)
    return files_of(snapshot_files_by_day(spark, path, version, days), days)


def snapshot_files_by_day(spark: SparkSession, path: str, version: int,
                          days: Iterable[dt.date]) -> dict[dt.date, tuple[DataFile, ...]]:
    """``snapshot_files`` of each of ``days`` (a day without rows maps to no files), listed in
    one Spark job; each day's files sorted by URI."""
    by_day: dict[dt.date, list[DataFile]] = {day: [] for day in days}
    for uri, day, rows in delta.file_rows(spark, path, version, list(by_day)):
        by_day[day].append(DataFile(uri=petastorm_uri(uri), rows=rows))
    return {day: tuple(sorted(files, key=lambda f: f.uri)) for day, files in by_day.items()}


def files_of(by_day: Mapping[dt.date, Sequence[DataFile]], days: Iterable[dt.date]) -> list[DataFile]:
    """The files of ``days`` in ``by_day``, each once, sorted by URI (the order fixes the shard
    assignment)."""
    return sorted((file for day in dict.fromkeys(days) for file in by_day[day]), key=lambda f: f.uri)


def row_group_rows(files: Sequence[DataFile]) -> list[int]:
    """Rows of each row group, in the order Petastorm numbers them: list order, then row-group
    index within a file (``petastorm.etl.dataset_metadata._split_row_groups_from_footers``).

    Reads the Parquet footers through the filesystem Petastorm would use, so it works wherever
    the reader does.

    Raises:
        PipelineError: when a file's footer disagrees with its snapshot row count (deletion
            vectors or a stale file list: Petastorm would then read rows the table does not hold).
    """
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    if not files:
        return []
    _quiet_petastorm()
    # Petastorm: the same URL-to-filesystem resolution as make_batch_reader.
    filesystem, paths = get_filesystem_and_path_or_paths([f.uri for f in files])
    rows = []
    for file, file_path in zip(files, paths):
        with filesystem.open(file_path, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata
        groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        if sum(groups) != file.rows:
            raise PipelineError(f"{file.uri} holds {sum(groups)} rows but the table snapshot counts "
                                f"{file.rows} (deletion vectors are not supported by this reader)")
        rows.extend(groups)
    return rows


def assign_row_groups(group_rows: Sequence[int], size: int) -> list[int]:
    """Rows per rank when row group ``g`` goes to rank ``g % size`` (Petastorm's rule).

    Args:
        group_rows: rows of each row group, in Petastorm's order.
        size: the number of ranks.

    Returns:
        [size] rows per rank; ranks beyond the number of row groups get 0.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    per_rank = [0] * size
    for index, rows in enumerate(group_rows):
        per_rank[index % size] += rows
    return per_rank


def shard_rows(files: Sequence[DataFile], size: int) -> list[int]:
    """Rows each of ``size`` ranks reads per epoch, known before reading.

    Returns:
        [size] rows per rank, summing to the files' rows.
    """
    return assign_row_groups(row_group_rows(files), size)


def shard_batches(files: Sequence[DataFile], size: int, batch_size: int) -> list[int]:
    """Batches each of ``size`` ranks yields per epoch (the last one of a rank may be short).

    Ranks read unequal shards, so a loop with collectives per step runs ``max`` of these steps
    and lets ranks that ran out take part without data (or stops at ``min``, leaving rows out).

    Returns:
        [size] batches per rank.
    """
    return [-(-rows // batch_size) for rows in shard_rows(files, size)]


def epoch_seed(seed: int, epoch: int) -> int:
    """One 32-bit seed per (seed, epoch): Petastorm's generators take seeds below 2**32."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def to_arrays(chunk: Mapping[str, np.ndarray], columns: Columns) -> Arrays:
    """A column-wise chunk (a Petastorm batch as a dict) as training arrays, without per-row
    Python.

    Returns:
        ``cat`` [N, F] int64, ``num`` [N, M] float32, each label [N] float32, each key [N].
    """
    rows = len(next(iter(chunk.values())))
    arrays = {"cat": _stack([chunk[c] for c in columns.cat], rows, np.int64),
              "num": _stack([chunk[c] for c in columns.num], rows, np.float32)}
    # Writable, so torch.from_numpy can share the memory (Arrow hands out read-only buffers).
    arrays.update({name: np.require(chunk[name], np.float32, ["C", "W"]) for name in columns.labels})
    arrays.update({name: np.asarray(chunk[name]) for name in columns.keys})
    return arrays


def _stack(columns: list[np.ndarray], rows: int, dtype: type) -> np.ndarray:
    """[N, len(columns)] of ``dtype``: one cast-and-copy pass ([N, 0] when there are none)."""
    if not columns:
        return np.empty((rows, 0), dtype=dtype)
    return np.stack(columns, axis=1, dtype=dtype, casting="unsafe")


def rebatch(chunks: Iterable[Arrays], batch_size: int, *, buffer_rows: int = 0,
            rng: Optional[np.random.Generator] = None) -> Iterator[Arrays]:
    """Cuts chunks of any size (Petastorm's are row-group sized) into batches of exactly
    ``batch_size`` rows; the last batch holds the rest.

    With ``rng``, it shuffles across chunks: it keeps at least ``buffer_rows`` rows back while
    more chunks come, and draws every batch at random from all rows held.

    Args:
        chunks: dicts of arrays sharing their first dimension N.
        batch_size: B.
        buffer_rows: rows kept back for mixing (with ``rng`` only).
        rng: the shuffling generator; None keeps the order of the chunks.

    Returns:
        An iterator of dicts of [B, ...] arrays, every row once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    keep = buffer_rows if rng is not None else 0
    pool: Optional[Arrays] = None
    for chunk in chunks:
        pool = chunk if pool is None else {k: np.concatenate([pool[k], chunk[k]]) for k in pool}
        ready = max(0, _rows(pool) - keep) // batch_size
        if ready:
            drawn, pool = _draw(pool, ready * batch_size, rng)
            yield from _slices(drawn, batch_size)
    if pool is not None and _rows(pool):
        drawn, _ = _draw(pool, _rows(pool), rng)
        yield from _slices(drawn, batch_size)


def _rows(arrays: Arrays) -> int:
    return len(next(iter(arrays.values())))


def _draw(arrays: Arrays, count: int, rng: Optional[np.random.Generator]) -> tuple[Arrays, Arrays]:
    """``count`` rows (a uniform random subset in random order with ``rng``, else the first
    ones) and the rows left, in their order."""
    if rng is None:
        return {k: v[:count] for k, v in arrays.items()}, {k: v[count:] for k, v in arrays.items()}
    chosen = rng.permutation(_rows(arrays))[:count]
    left = np.ones(_rows(arrays), dtype=bool)
    left[chosen] = False
    # Only drawn rows take the (cache-unfriendly) random gather; the rest is a sequential copy.
    return {k: v[chosen] for k, v in arrays.items()}, {k: v[left] for k, v in arrays.items()}


def _slices(arrays: Arrays, batch_size: int) -> Iterator[Arrays]:
    # Row slices of C-contiguous arrays are contiguous views: no copy until torch needs one.
    for begin in range(0, _rows(arrays), batch_size):
        yield {k: v[begin:begin + batch_size] for k, v in arrays.items()}


def to_batch(arrays: Arrays, columns: Columns) -> Batch:
    """Training arrays as the loop's batch: features and labels as tensors (sharing memory), keys
    as numpy arrays."""
    batch: Batch = {name: torch.from_numpy(arrays[name]) for name in ("cat", "num", *columns.labels)}
    batch.update({name: arrays[name] for name in columns.keys})
    return batch


@contextlib.contextmanager
def open_batches(files: Sequence[DataFile], *, columns: Columns, batch_size: int, rank: int = 0,
                 size: int = 1, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                 buffer_rows: int = DEFAULT_BUFFER_ROWS, workers_count: int = 1,
                 prefetch_row_groups: int = 4) -> Iterator[Iterator[Batch]]:
    """Opens one epoch of this rank's shard as batches.

    Every row of ``files`` reaches exactly one rank once per epoch; rank ``rank`` yields
    ``shard_batches(files, size, batch_size)[rank]`` batches (none when it has no row group).

    The rows a rank reads depend on ``files`` and ``size`` only. With one worker (the default)
    their order depends on ``seed``, ``epoch`` and ``rank`` alone, so a resumed run sees the same
    batches; more workers read faster but hand row groups over in the order they finish them.

    Args:
        files: the snapshot's files (``snapshot_files``), the same list on every rank.
        columns: what to read and how to stack it.
        batch_size: B; every batch but the last has B rows.
        rank: this rank (``ranks.rank`` of the training backend).
        size: the number of ranks (``ranks.size``).
        shuffle: shuffle the row-group order and rows across a buffer.
        seed: the run's seed.
        epoch: the epoch, so every epoch has its own order.
        buffer_rows: rows held back for shuffling across row groups (with ``shuffle``); the rows
            held are copied again as each row group arrives, so about a row group's rows is ample.
        workers_count: Petastorm reader threads (more than 1: faster, order not reproducible).
        prefetch_row_groups: decoded row groups Petastorm may queue ahead (memory bound).

    Returns:
        A context manager giving an iterator of dicts: ``cat`` [B, F] int64, ``num`` [B, M]
        float32 and each label [B] float32 as tensors, each key [B] as a numpy array.
    """
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside 0..{size - 1}")
    groups = len(row_group_rows(files))
    shards = min(size, groups)
    if rank >= shards:
        # No row group for this rank (Petastorm would raise NoDataAvailableError): an empty epoch.
        yield iter(())
        return

    from petastorm import make_batch_reader

    _quiet_petastorm()
    epoch_state = epoch_seed(seed, epoch)
    sharding = {"cur_shard": rank, "shard_count": shards} if shards > 1 else {}
    # Petastorm: exact-name patterns, since schema_fields are regular expressions.
    fields = [f"^{re.escape(name)}$" for name in columns.read]
    with make_batch_reader([f.uri for f in files], schema_fields=fields,
                           reader_pool_type="thread", workers_count=workers_count,
                           results_queue_size=prefetch_row_groups,
                           # Petastorm: one seed on every rank (the shard rule must agree across ranks).
                           seed=epoch_state if shuffle else None,
                           shuffle_row_groups=shuffle,
                           shuffle_rows=False,  # rebatch permutes every row it holds
                           num_epochs=1, **sharding) as reader:
        rng = np.random.default_rng([seed, epoch, rank]) if shuffle else None
        chunks = (to_arrays(chunk._asdict(), columns) for chunk in reader)
        yield (to_batch(arrays, columns)
               for arrays in rebatch(chunks, batch_size, buffer_rows=buffer_rows, rng=rng))


def _quiet_petastorm() -> None:
    """Silences the FutureWarnings of pyarrow's legacy dataset API, which Petastorm 0.12.1 uses
    (the pyarrow pin keeps it) from its reader threads on every row group. Idempotent: an equal
    filter replaces the earlier one."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm\.")


def read_batches(files: Sequence[DataFile], **options) -> Iterator[Batch]:
    """``open_batches`` as a plain generator (the reader closes when it is exhausted or closed),
    for loops that take ``train(epoch) -> Iterable[Batch]``; see ``open_batches`` for options."""
    with open_batches(files, **options) as batches:
        yield from batches
