"""Writes generated records in the raw-log layout: ``<source>/dt=YYYY-MM-DD/part-NNNNN.jsonl``
(``.jsonl.gz`` with ``synth.gzip``) or ``.parquet``, one folder per UTC event date."""
from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.synth.dirt import REASON, malformed_lines
from pipeline.synth.events import DAY_MS, TS_MS

MARKER = "_SYNTHETIC"  # marks a folder this generator owns and may replace

RAW_COLUMNS = {
    "exposures": ["impression_id", "request_id", "ts", "user_id", "item_id", "position", "category",
                  "brand", "price", "device", "user_age", "user_gender", "user_activity"],
    "clicks": ["click_id", "impression_id", "ts"],
    "conversions": ["conversion_id", "click_id", "ts", "value"],
}


def prepare_folder(path: str) -> None:
    """Empties ``path`` for a new generation; refuses a folder that holds anything but
    generated data, so real logs are never deleted."""
    if "://" in path:
        raise PipelineError(f"pipeline generate writes local folders only, got {path}")
    if os.path.isdir(path) and os.listdir(path):
        if not os.path.exists(os.path.join(path, MARKER)):
            raise PipelineError(f"refusing to overwrite {path}: it holds data this generator did not write")
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    open(os.path.join(path, MARKER), "w").close()


def event_dates(ts_ms: np.ndarray) -> np.ndarray:
    """UTC event date of each epoch-ms time, as ``datetime64[D]``."""
    return (np.asarray(ts_ms, dtype=np.int64) // DAY_MS).astype("datetime64[D]")


def write_partition(records: pd.DataFrame, source: str, day: dt.date, root: str, fmt: str,
                    compress: bool, rows_per_file: int, malformed_rate: float,
                    rng: np.random.Generator) -> dict[str, int]:
    """Writes one event-date partition of ``source`` and returns its lines counted by ``_reason``.

    Malformed lines (JSON only) are cut-short copies of real lines, shuffled among them.
    """
    folder = os.path.join(root, f"dt={day.isoformat()}")
    os.makedirs(folder, exist_ok=True)
    counts = records[REASON].value_counts().to_dict()
    table = records[RAW_COLUMNS[source]]
    if fmt == "parquet":
        table = table.assign(ts=table["ts"].map(lambda v: None if v is None else str(v)))
        for i, start in enumerate(range(0, max(len(table), 1), rows_per_file)):
            table.iloc[start:start + rows_per_file].to_parquet(
                os.path.join(folder, f"part-{i:05d}.parquet"), index=False)
        return counts
    lines = table.to_json(orient="records", lines=True, date_format="iso").splitlines() if len(table) else []
    bad = malformed_lines(lines, int(rng.binomial(int(counts.get("clean", 0)), malformed_rate)), rng)
    if bad:
        counts["malformed"] = len(bad)
        lines = lines + bad
        lines = [lines[i] for i in rng.permutation(len(lines))]
    suffix = ".jsonl.gz" if compress else ".jsonl"
    for i, start in enumerate(range(0, max(len(lines), 1), rows_per_file)):
        text = "".join(line + "\n" for line in lines[start:start + rows_per_file])
        path = os.path.join(folder, f"part-{i:05d}{suffix}")
        if compress:
            with gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as fh:
                fh.write(text.encode())
        else:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    return counts


def write_by_event_date(records: pd.DataFrame, source: str, root: str, fmt: str, compress: bool,
                        rows_per_file: int, malformed_rate: float,
                        rng: np.random.Generator) -> dict[str, dict[str, int]]:
    """Splits ``records`` by the UTC date of ``_ts_ms`` and writes each partition.

    Returns:
        Line counts by reason, per event date (ISO string).
    """
    days = event_dates(records[TS_MS].to_numpy())
    counts = {}
    for day in np.unique(days):
        part = records[days == day]
        iso = str(day)
        counts[iso] = write_partition(part, source, dt.date.fromisoformat(iso), root, fmt, compress,
                                      rows_per_file, malformed_rate, rng)
    return counts


def write_empty_partition(source: str, day: dt.date, root: str, fmt: str, compress: bool) -> None:
    """An empty partition: a date on which the source logged nothing is still a complete date
    (JSON: one empty file; Parquet: an empty folder, as a file needs column types)."""
    folder = os.path.join(root, f"dt={day.isoformat()}")
    os.makedirs(folder, exist_ok=True)
    if fmt == "json":
        suffix = ".jsonl.gz" if compress else ".jsonl"
        with (gzip.GzipFile if compress else open)(os.path.join(folder, f"part-00000{suffix}"), "wb"):
            pass


def write_truth(truth: pd.DataFrame, root: str, day: dt.date) -> None:
    """One Parquet file per exposure date under ``<root>/dt=YYYY-MM-DD/``."""
    folder = os.path.join(root, f"dt={day.isoformat()}")
    os.makedirs(folder, exist_ok=True)
    # Millisecond timestamps: Spark cannot read Parquet's nanosecond timestamps.
    truth.to_parquet(os.path.join(folder, "part-00000.parquet"), index=False, coerce_timestamps="ms")
