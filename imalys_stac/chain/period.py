"""Acquisition periods: ``period = 20220501-20220731``."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from .errors import ChainError

#: The form every message shows, so users can copy it.
PERIOD_FORM = "YYYYMMDD-YYYYMMDD (e.g. 20220501-20220731)"

# Two 8-digit dates separated by a hyphen, en/em dash (spaces around allowed) or whitespace alone.
_PERIOD_RE = re.compile(r"^\s*([0-9]{8})\s*(?:[-\u2013\u2014]|\s)\s*([0-9]{8})\s*$")


def _parse_day(text: str, whole: str) -> date:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise ChainError(
            f"period = {whole}", parameter="period",
            hint=f"{text} is not a calendar date; write {PERIOD_FORM}",
        ) from None


@dataclass(frozen=True, order=True)
class Period:
    """An inclusive date range (both ends belong to it)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ChainError(
                f"period = {self}", parameter="period",
                hint=f"the start {_day(self.start)} is after the end {_day(self.end)}; write {PERIOD_FORM}",
            )

    @classmethod
    def parse(cls, text: str) -> Period:
        """Read ``YYYYMMDD-YYYYMMDD``; also ``YYYYMMDD - YYYYMMDD``, ``YYYYMMDD YYYYMMDD`` and an en dash.

        Raises :class:`ChainError` (without a location) naming the accepted form.
        """
        match = _PERIOD_RE.match(text)
        if not match:
            raise ChainError(f"period = {text.strip()}", parameter="period", hint=f"must be {PERIOD_FORM}")
        whole = text.strip()
        return cls(_parse_day(match.group(1), whole), _parse_day(match.group(2), whole))

    def contains(self, day: date | datetime) -> bool:
        """True when ``day`` lies in the period (ends included); datetimes count by their date."""
        if isinstance(day, datetime):
            day = day.date()
        return self.start <= day <= self.end

    def __contains__(self, day: date | datetime) -> bool:
        return self.contains(day)

    def __str__(self) -> str:
        return f"{_day(self.start)}-{_day(self.end)}"


def _day(d: date) -> str:
    """YYYYMMDD with a four-digit year also before 1000 (``strftime('%Y')`` drops the zeros on Linux)."""
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"
