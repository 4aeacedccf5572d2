"""How the package talks to people and to log collectors: Python ``logging`` and progress.

Every module logs through ``logging.getLogger(__name__)``; ``configure_logging`` (the ``pipeline``
command, and every training rank) gives the ``pipeline`` loggers one handler on standard error:

    2026-12-02T04:01:19Z INFO pipeline.training.loop: epoch 1/3: 120/480 batches (25%), 41.2 batches/s
    {"time": "2026-12-02T04:01:19Z", "level": "INFO", "logger": "pipeline.training.loop", "message": "..."}

(text, the default, or JSON lines with ``--log-format json``). ``-v`` shows DEBUG, ``-q`` only
warnings and errors. A command's result (its one-line summary, a table, the plan's JSON) is its
standard output, not a log record.

``progress`` is a tqdm bar on a terminal and, anywhere else (Airflow, spark-submit, a training
rank, a file), one log line every ``PROGRESS_SECONDS``: captured logs hold no carriage returns.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional, TypeVar

ROOT = "pipeline"
FORMATS = ("text", "json")
LEVEL_ENV, FORMAT_ENV = "MTRANK_LOG_LEVEL", "MTRANK_LOG_FORMAT"  # read when no argument is given
PROGRESS_SECONDS = 15.0  # between the log lines of a progress
BAR_SECONDS = 0.5  # between updates of a bar's figures

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogSettings:
    """What ``configure_logging`` set: handed to processes that configure their own (ranks)."""
    level: str = "INFO"
    format: str = "text"


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:  # noqa: N802 - logging's name
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", self.converter(record.created))


class TextFormatter(_UtcFormatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


class JsonFormatter(_UtcFormatter):
    """One JSON object per record: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_settings = LogSettings()


def configure_logging(level: Optional[str] = None, fmt: Optional[str] = None) -> LogSettings:
    """Sends the ``pipeline`` loggers' records at ``level`` and above to standard error, as
    ``fmt`` (``text`` or ``json``); unset arguments come from ``MTRANK_LOG_LEVEL`` and
    ``MTRANK_LOG_FORMAT``, else INFO and text. Calling it again replaces the handler."""
    global _settings
    level = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    fmt = (fmt or os.environ.get(FORMAT_ENV) or "text").lower()
    if fmt not in FORMATS:
        from pipeline.errors import PipelineError

        raise PipelineError(f"bad log format {fmt!r} (expected one of {', '.join(FORMATS)})")
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if getattr(h, "_mtrank", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._mtrank = True  # ours, replaced by the next call
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the host application's root handlers would print it twice
    _settings = LogSettings(level=level, format=fmt)
    return _settings


def current_settings() -> LogSettings:
    return _settings


def is_terminal() -> bool:
    return sys.stderr.isatty()


class Progress(Iterator[T]):
    """Iterates ``items``; on a terminal draws a tqdm bar, elsewhere logs one line every
    ``every_s`` seconds and one when done. ``figures`` (called only when a line or the bar is
    drawn, so not per item) adds running figures to either."""

    def __init__(self, items: Iterable[T], *, total: Optional[int], desc: str, unit: str,
                 enabled: bool = True, every_s: float = PROGRESS_SECONDS, logger: logging.Logger = log) -> None:
        self._items, self._total, self._desc, self._unit = iter(items), total, desc, unit
        self._log = logger
        self._figures: Callable[[], Mapping[str, str]] = dict
        self._bar = None
        self._enabled = enabled
        if enabled and is_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
        self._count, self._every = 0, every_s
        self._started = self._last = time.monotonic()
        self._done = False

    def __iter__(self) -> "Progress[T]":
        return self

    def __next__(self) -> T:
        try:
            item = next(self._items)
        except StopIteration:
            self._finish()
            raise
        self._count += 1
        if self._bar is not None:
            self._bar.update(1)
            if time.monotonic() - self._last >= BAR_SECONDS:
                self._last = time.monotonic()
                self._bar.set_postfix(self._figures(), refresh=False)
        elif self._enabled and time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            self._log.info(self.line())
        return item

    def figures(self, figures: Callable[[], Mapping[str, str]]) -> None:
        self._figures = figures

    def line(self, done: bool = False) -> str:
        """``desc: done/total unit (pct), rate unit/s, postfix``."""
        seconds = max(time.monotonic() - self._started, 1e-9)
        of = f"/{self._total}" if self._total else ""
        pct = f" ({100 * self._count / self._total:.0f}%)" if self._total else ""
        figures = "".join(f", {k}={v}" for k, v in self._figures().items())
        timing = f" in {seconds:.1f} s" if done else ""
        return f"{self._desc}: {self._count}{of} {self._unit}{pct}{timing}, {self._count / seconds:.1f} {self._unit}/s{figures}"

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            self._log.info(self.line(done=True))


def progress(items: Iterable[T], *, total: Optional[int] = None, desc: str, unit: str = "it",
             enabled: bool = True, logger: logging.Logger = log) -> Progress[T]:
    """``Progress`` over ``items`` (see the module doc); its lines go to ``logger``."""
    return Progress(items, total=total, desc=desc, unit=unit, enabled=enabled, logger=logger)


def report_error(line: str) -> None:
    """A command's final one-line error: plain on standard error (scripts and people read it as
    is), or as a JSON record with ``--log-format json``."""
    if _settings.format == "json":
        logging.getLogger(ROOT).error(line)
    else:
        print(line, file=sys.stderr)
