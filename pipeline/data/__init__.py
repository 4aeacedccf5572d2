"""The training data path: a Delta snapshot's files read through Petastorm, one shard per rank."""
from pipeline.data.reader import (Columns, DataFile, open_batches, read_batches, shard_batches, shard_rows,
                                  snapshot_files)

__all__ = [
    "Columns",
    "DataFile",
    "open_batches",
    "read_batches",
    "shard_batches",
    "shard_rows",
    "snapshot_files",
]
