"""``pipeline fusion-train --date D``: the learned gate, trained on the final, scored day D and
saved as ``<storage.artifacts>/fusion/learned-D/``; scoring D' uses the newest gate trained on a
day before D' (a gate never scores its own day)."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipeline.config import Config
from pipeline.confload import to_dict
from pipeline.errors import PipelineError
from pipeline.scoring.labelled import day_columns, labelled_day
from pipeline.scoring.learned import train_learned

GATE_PREFIX = "learned-"


def gate_directory(cfg: Config, day: dt.date) -> str:
    """Where ``fusion-train --date day`` saves the learned gate."""
    return os.path.join(cfg.artifacts_path, "fusion", f"{GATE_PREFIX}{day.isoformat()}")


def newest_gate(cfg: Config, *, before: dt.date) -> tuple[str, dt.date]:
    """The gate trained on the newest day before ``before`` (a gate never scores its own day).

    Raises:
        PipelineError: no such gate.
    """
    folder = os.path.join(cfg.artifacts_path, "fusion")
    days = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = re.fullmatch(rf"{GATE_PREFIX}(\d{{4}}-\d{{2}}-\d{{2}})", name)
        if match and os.path.exists(os.path.join(folder, name, "gate.pt")):
            day = dt.date.fromisoformat(match.group(1))
            if day < before:
                days.append(day)
    if not days:
        raise PipelineError(f"fusion.strategy learned: no gate trained on a day before {before} under {folder}; "
                            f"run pipeline fusion-train --date D on a final, scored day D first")
    return gate_directory(cfg, max(days)), max(days)


@dataclass(frozen=True)
class GateSummary:
    date: dt.date
    rows: int
    model_ids: tuple[str, ...]
    history: tuple[float, ...]
    directory: str
    seconds: float

    def line(self) -> str:
        return (f"fusion-train {self.date}: learned gate on {self.rows:,} exposures scored by "
                f"{', '.join(self.model_ids)}, {len(self.history)} epochs, loss {self.history[0]:.4f} -> "
                f"{self.history[-1]:.4f}; saved to {self.directory}; {self.seconds:.1f} s")


def train_fusion_gate(spark: SparkSession, cfg: Config, date: dt.date) -> GateSummary:
    """Trains the learned gate on the final, scored day ``date`` and saves it
    (``gate_directory``), with ``training.json`` (what it was trained on)."""
    clock = time.perf_counter()
    frame = labelled_day(spark, cfg, date, day_columns(cfg.fusion))
    gate, history = train_learned(frame, cfg.fusion)
    directory = gate_directory(cfg, date)
    gate.save(directory)
    model_ids = tuple(sorted(frame["model_id"].dropna().unique()))
    with open(os.path.join(directory, "training.json"), "w", encoding="utf-8") as fh:
        json.dump({"date": date.isoformat(), "rows": len(frame), "model_ids": list(model_ids),
                   "history": history, "fusion": to_dict(cfg.fusion)}, fh, indent=1)
    return GateSummary(date=date, rows=len(frame), model_ids=model_ids, history=tuple(history),
                       directory=directory, seconds=time.perf_counter() - clock)
