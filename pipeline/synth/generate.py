"""``pipeline generate``: synthetic raw logs with a known truth.

Writes the three raw sources in the contract's layout, the truth table (per impression: true
pCTR and pCVR, would-convert-if-clicked, the clean labels) under ``synth.truth_path``, and a
``_manifest.json`` there counting every written line by what a correct pipeline must do with it.
The pipeline never reads the truth; tests and evaluation do. Deterministic for ``synth.seed``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from pipeline import console
from pipeline.config import Config
from pipeline.dates import date_range
from pipeline.errors import PipelineError
from pipeline.logs.schema import SOURCES
from pipeline.synth import dirt, writer
from pipeline.synth.events import TS_MS, DayEvents, simulate_day
from pipeline.synth.world import make_world

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"  # "_" keeps Parquet and Spark readers of the truth folder off it


@dataclass(frozen=True)
class GenerateSummary:
    exposures: int        # clean exposures
    clicks: int           # clean clicks (in or after their window)
    conversions: int      # clean conversions
    lines: int            # raw lines written, dirt included
    dirty_lines: int      # lines that are duplicates or must be quarantined
    days: int
    seconds: float

    def line(self, cfg: Config) -> str:
        return (f"generate: {self.exposures:,} exposures over {self.days} days, {self.clicks:,} clicks, "
                f"{self.conversions:,} conversions; {self.lines:,} raw lines "
                f"({self.dirty_lines / max(self.lines, 1):.1%} dirty) in "
                f"{os.path.dirname(cfg.raw_path('exposures'))}, truth in {cfg.truth_path} "
                f"({self.seconds:.1f} s)")


def generate(cfg: Config, progress: bool = True) -> GenerateSummary:
    """Generates raw logs and truth for ``synth.days`` days from ``synth.start_date``."""
    started = time.time()
    conf = cfg.synth
    if cfg.raw.format not in ("json", "parquet"):
        raise PipelineError(f"pipeline generate writes json or parquet, not raw.format={cfg.raw.format}")
    for path in [cfg.raw_path(s) for s in SOURCES] + [cfg.truth_path]:
        writer.prepare_folder(path)

    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    children: dict[str, list[pd.DataFrame]] = defaultdict(list)
    simulated = Simulation(cfg)
    for day_index, (day, events, rng) in enumerate(console.progress(simulated, total=conf.days, desc="generate",
                                                                     unit="days", enabled=progress, logger=log)):
        writer.write_truth(events.truth, cfg.truth_path, day)
        counts["exposures"].update(_write(cfg, "exposures", events.exposures, rng, tag=f"{day_index:04d}"))
        children["clicks"].append(events.clicks)
        children["conversions"].append(events.conversions)
    children_rng = np.random.default_rng(simulated.children_seed)
    days = date_range(conf.start_date, conf.start_date + dt.timedelta(days=conf.days - 1))
    for source in ("clicks", "conversions"):
        counts[source] = _write(cfg, source, pd.concat(children[source], ignore_index=True), children_rng, tag="")
        for day in days:  # a day without clicks (or conversions) still has its partition
            if day.isoformat() not in counts[source]:
                writer.write_empty_partition(source, day, cfg.raw_path(source), cfg.raw.format, conf.gzip)
                counts[source][day.isoformat()] = {}

    _write_manifest(cfg, counts)
    lines = sum(n for per_day in counts.values() for c in per_day.values() for n in c.values())
    clean = {s: sum(c.get(dirt.CLEAN, 0) for c in counts[s].values()) for s in SOURCES}
    return GenerateSummary(exposures=clean["exposures"], clicks=clean["clicks"],
                           conversions=clean["conversions"], lines=lines,
                           dirty_lines=lines - sum(clean.values()), days=conf.days,
                           seconds=time.time() - started)


class Simulation:
    """The clean events of every generated day, in order: ``(day, events, rng)``, where ``rng`` is
    the day's generator, which writing the day's dirt goes on drawing from. Deterministic for
    ``synth.seed``; ``children_seed`` seeds the dirt of clicks and conversions."""

    def __init__(self, cfg: Config) -> None:
        world_seed, self._day_seed, self.children_seed = np.random.SeedSequence(cfg.synth.seed).spawn(3)
        self._cfg = cfg
        self._world = make_world(cfg.synth, np.random.default_rng(world_seed))

    def __iter__(self) -> Iterator[tuple[dt.date, DayEvents, np.random.Generator]]:
        conf = self._cfg.synth
        days = date_range(conf.start_date, conf.start_date + dt.timedelta(days=conf.days - 1))
        for day_index, (day, seed) in enumerate(zip(days, self._day_seed.spawn(len(days)))):
            rng = np.random.default_rng(seed)
            yield day, simulate_day(self._world, conf, self._cfg.labels, day, day_index, rng), rng


def _write(cfg: Config, source: str, records: pd.DataFrame, rng: np.random.Generator,
           tag: str) -> dict[str, dict[str, int]]:
    conf = cfg.synth
    records = records.assign(ts=dirt.format_ts(records[TS_MS].to_numpy(), rng, conf))
    records = dirt.add_dirt(records, source, conf.dirt, conf, rng, tag)
    return writer.write_by_event_date(records, source, cfg.raw_path(source), cfg.raw.format, conf.gzip,
                                      conf.rows_per_file, conf.dirt.malformed, rng)


def _write_manifest(cfg: Config, counts: dict) -> None:
    manifest = {
        "seed": cfg.synth.seed,
        "start_date": cfg.synth.start_date.isoformat(),
        "days": cfg.synth.days,
        "format": cfg.raw.format,
        "lines": counts,  # source -> event date -> clean | duplicate | <reason code> -> lines
    }
    with open(os.path.join(cfg.truth_path, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)


def read_manifest(truth_path: str) -> dict:
    """The manifest of a generation (for tests and reconciliation checks)."""
    with open(os.path.join(truth_path, MANIFEST), encoding="utf-8") as fh:
        return json.load(fh)
