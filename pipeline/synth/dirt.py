"""Dirty raw records, added on top of the clean ones so the clean labels stay as they were.

Every dirty record carries, in the internal column ``_reason``, what a correct pipeline must do
with it: ``duplicate`` (count once), or the quarantine reason code it deserves. Dirty records
other than duplicates get fresh ids, so they never collide with clean ones.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pipeline.config import DirtConf, SynthConf
from pipeline.logs import schema
from pipeline.synth.events import PARENT_TS_MS, SECOND_MS, TS_MS

REASON = "_reason"
CLEAN, DUPLICATE = "clean", "duplicate"
BAD_TS_VALUES = np.array(["2026-13-45T25:61:00Z", "yesterday", "not-a-timestamp", "2026.10.01 06:22"],
                         dtype=object)
ID_PREFIX = {"impression_id": "imp-", "click_id": "clk-", "conversion_id": "cnv-"}


def format_ts(ts_ms: np.ndarray, rng: np.random.Generator, conf: SynthConf) -> np.ndarray:
    """Renders epoch-ms times the ways real logs do: ISO-8601 with ``Z`` (most), with a
    ``+02:00`` offset, or epoch milliseconds (an integer), per ``synth.ts_*_rate``."""
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    style = rng.random(len(ts_ms))
    utc = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="s").astype(object) + "Z"
    plus2 = np.datetime_as_string((ts_ms + 7_200_000).astype("datetime64[ms]"), unit="s").astype(object) + "+02:00"
    out = np.where(style < conf.ts_offset_rate, plus2, utc)
    epoch = style >= 1.0 - conf.ts_epoch_ms_rate
    out[epoch] = [int(v) for v in ts_ms[epoch]]
    return out


def add_dirt(clean: pd.DataFrame, source: str, rates: DirtConf, conf: SynthConf,
             rng: np.random.Generator, tag: str) -> pd.DataFrame:
    """Returns ``clean`` (``_reason = clean``) followed by the dirty records of ``source``.

    Args:
        clean: clean records with ``ts`` rendered, ``_ts_ms`` and, for clicks and conversions,
            ``_parent_ts_ms``.
        source: ``exposures``, ``clicks`` or ``conversions``.
        rates: dirty records per clean record, per kind.
        conf: the generator's conf (timestamp styles).
        rng: the random source.
        tag: unique per call; makes fresh ids unique across calls.
    """
    n = len(clean)
    parts = [clean.assign(**{REASON: CLEAN})]
    fresh = _FreshIds(source, tag)

    def sample(rate: float) -> pd.DataFrame:
        return clean.iloc[np.sort(rng.choice(n, rng.binomial(n, rate), replace=True))].copy() if n else clean.copy()

    parts.append(sample(rates.duplicate).assign(**{REASON: DUPLICATE}))

    rows = sample(rates.missing_field)
    fields = np.array(schema.REQUIRED_FIELDS[source], dtype=object)[rng.integers(0, len(schema.REQUIRED_FIELDS[source]), len(rows))]
    rows = fresh.assign(rows)
    for field in schema.REQUIRED_FIELDS[source]:
        rows[field] = rows[field].astype(object).where(fields != field, None)
    parts.append(rows.assign(**{REASON: [schema.missing(f) for f in fields]}))

    rows = fresh.assign(sample(rates.bad_ts))
    rows["ts"] = BAD_TS_VALUES[rng.integers(0, len(BAD_TS_VALUES), len(rows))]
    parts.append(rows.assign(**{REASON: schema.BAD_TS}))

    if source in schema.PARENT:
        parent_field, _ = schema.PARENT[source]
        rows = fresh.assign(sample(rates.orphan))
        rows[parent_field] = [f"{ID_PREFIX[parent_field]}o{tag}-{k:07d}" for k in range(len(rows))]
        parts.append(rows.assign(**{REASON: schema.UNKNOWN_PARENT[source]}))

        rows = fresh.assign(sample(rates.before_parent))
        rows[TS_MS] = rows[PARENT_TS_MS] - rng.integers(1, 3_600, len(rows)) * SECOND_MS
        rows["ts"] = format_ts(rows[TS_MS].to_numpy(), rng, conf)
        parts.append(rows.assign(**{REASON: schema.BEFORE_PARENT[source]}))

    if source == "conversions":
        rows = fresh.assign(sample(rates.negative_value))
        rows["value"] = -np.maximum(rows["value"].to_numpy(), 0.01)
        parts.append(rows.assign(**{REASON: schema.NEGATIVE_VALUE}))

    with warnings.catch_warnings():  # all-null columns of dirty rows: object dtype either way
        warnings.simplefilter("ignore", FutureWarning)
        out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)


def malformed_lines(lines: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` broken JSON lines: copies of random lines cut short (never a complete object)."""
    if not lines or count <= 0:
        return []
    chosen = rng.integers(0, len(lines), count)
    return [lines[i][: int(rng.integers(1, max(len(lines[i]) - 1, 2)))] for i in chosen]


class _FreshIds:
    """Fresh ids for dirty records: ``<prefix>x<tag>-<k>``, never equal to a clean id."""

    def __init__(self, source: str, tag: str):
        self.field = schema.ID_FIELD[source]
        self.prefix = f"{ID_PREFIX[self.field]}x{tag}-"
        self.next = 0

    def assign(self, rows: pd.DataFrame) -> pd.DataFrame:
        rows[self.field] = [f"{self.prefix}{self.next + k:07d}" for k in range(len(rows))]
        self.next += len(rows)
        return rows
