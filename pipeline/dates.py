"""Date parsing and ranges: every date from a user passes through ``parse_date`` first."""
from __future__ import annotations

import datetime as dt
import re
from typing import Iterator

from pipeline.errors import PipelineError

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_date(text: object, what: str = "date") -> dt.date:
    """Parses a strict ``YYYY-MM-DD`` date (or passes a ``date`` through).

    Args:
        text: the user's value.
        what: what the value is, for the error message (e.g. ``--date``).

    Raises:
        PipelineError: naming ``what`` and the value, when it is not a real calendar date.
    """
    if isinstance(text, dt.date) and not isinstance(text, dt.datetime):
        return text
    if isinstance(text, str) and _ISO_DATE.fullmatch(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise PipelineError(f"bad {what}: {text!r} (expected a date YYYY-MM-DD)")


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every date from ``start`` to ``end``, both included; an error if ``end < start``."""
    if end < start:
        raise PipelineError(f"bad date range: end {end} is before start {start}")
    return list(_days(start, (end - start).days + 1))


def _days(start: dt.date, count: int) -> Iterator[dt.date]:
    for offset in range(count):
        yield start + dt.timedelta(days=offset)
