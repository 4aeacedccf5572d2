"""The training data path: a Delta snapshot's files read through Petastorm, one shard per rank."""
from pipeline.data.reader import (Columns, DataFile, files_of, open_batches, read_batches, shard_batches, shard_rows,
                                  snapshot_files, snapshot_files_by_day)

__all__ = [
    "Columns",
    "DataFile",
    "files_of",
    "open_batches",
    "read_batches",
    "shard_batches",
    "shard_rows",
    "snapshot_files",
    "snapshot_files_by_day",
]
