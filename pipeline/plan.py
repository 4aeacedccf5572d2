"""The plan of one night, computed in one place for both runners of the nightly chain.

    build-samples --date D  ->  train (when due)  ->  score D  ->  report

``pipeline run --date D`` (pipeline/nightly.py) follows the plan in one Spark session; the Airflow
DAG (dags/mtrank_nightly.py) asks for it with ``pipeline plan --date D`` (one JSON object on
stdout) and gates its train task on ``train.due``, while ``pipeline train --date D`` trains the
plan's window. Neither runner computes a date, a window or a weekday itself, so they cannot drift.

Train is due on ``nightly.train_weekday`` (of D), every night with ``daily``, whenever
``nightly.force_train`` is set, and on the first night (no model to score with yet). It trains
``nightly.model`` (default ``model.name``) on the ``nightly.train_days`` days that end
``label_delay_days`` before D, so that the training, validation and test days all have final
labels. How far back build-samples rebuilds is the job's own decision (from the ``samples``
table), not the plan's.

Everything here is a pure function of the conf, the date and one fact about the registry (whether
it has a champion: ``pipeline.registry.has_champion``). ``NightlyConf``, the ``nightly:`` section of
the conf, lives here too.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional

from pipeline.confload import require
from pipeline.models.registry import MODELS

if TYPE_CHECKING:
    from pipeline.config import Config

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class NightlyConf:
    """``pipeline run`` and the DAG: when the nightly chain trains, and on which days (see pipeline/plan.py)."""

    train_weekday: str = "sunday"         # a weekday, or daily
    train_days: int = 14                  # training window length
    force_train: bool = False             # train tonight whatever the weekday
    model: Optional[str] = None           # None: model.name

    def __post_init__(self) -> None:
        require(self.train_weekday in (*WEEKDAYS, "daily"),
                f"nightly.train_weekday must be a weekday or daily, got {self.train_weekday!r}")
        require(self.train_days >= 1, "nightly.train_days must be >= 1")
        if self.model is not None:
            require(self.model in MODELS, f"nightly.model must be one of {', '.join(MODELS)}, got {self.model!r}")


@dataclass(frozen=True)
class TrainPlan:
    """Whether the night trains, why (or why not), and what it would train."""

    due: bool
    reason: str  # due: the rule that made it due; not due: the rule that was not met
    start: dt.date  # first training day
    end: dt.date  # last training day; its validation and test days follow
    model: str


@dataclass(frozen=True)
class NightlyPlan:
    date: dt.date
    build_samples: dt.date  # the nightly build-samples --date
    train: TrainPlan
    score: dt.date  # the day scored, with the model score uses by default
    report: str  # where the report is written

    def to_json(self) -> str:
        """One line of JSON: dates as ``YYYY-MM-DD``, fields as named here."""
        return json.dumps(asdict(self), default=dt.date.isoformat, sort_keys=False)

    def line(self) -> str:
        train = (f"train {self.train.model} on {self.train.start}..{self.train.end} ({self.train.reason})"
                 if self.train.due else f"train skipped ({self.train.reason})")
        return f"plan {self.date}: build-samples, {train}, score {self.score}, report"


def label_delay_days(cfg: Config) -> int:
    """Days between a night and its last training day: its test and validation days must be final."""
    return cfg.labels.lookback_days + cfg.training.validation_days + cfg.training.test_days


def training_window(cfg: Config, date: dt.date) -> tuple[dt.date, dt.date]:
    """The training days (first, last) of the night ``date``."""
    end = date - dt.timedelta(days=label_delay_days(cfg))
    return end - dt.timedelta(days=cfg.nightly.train_days - 1), end


def night_model(cfg: Config) -> str:
    """The model the nightly chain trains."""
    return cfg.nightly.model or cfg.model.name


def train_due(cfg: Config, date: dt.date, has_model: bool) -> tuple[bool, str]:
    """Whether training is due on ``date``, and the reason (or the rule that was not met)."""
    conf = cfg.nightly
    if conf.force_train:
        return True, "nightly.force_train"
    if conf.train_weekday == "daily":
        return True, "daily"
    if WEEKDAYS[date.weekday()] == conf.train_weekday:
        return True, conf.train_weekday
    if not has_model:
        return True, "no champion model yet"
    return False, f"not due: trains on {conf.train_weekday}s (or --set nightly.force_train=true)"


def plan_night(cfg: Config, date: dt.date, has_model: bool) -> NightlyPlan:
    """The plan of the night ``date``, given whether a model to score with exists."""
    due, reason = train_due(cfg, date, has_model)
    start, end = training_window(cfg, date)
    return NightlyPlan(
        date=date,
        build_samples=date,
        train=TrainPlan(due=due, reason=reason, start=start, end=end, model=night_model(cfg)),
        score=date,
        report=cfg.report.path,
    )
