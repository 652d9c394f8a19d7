"""The window of scoring timestamps a worker stores, relative to its clock. No I/O.

Every day a record names is a partition of its payload table, so a live worker bounds how far in the past and the
future it accepts records (``--max-record-age``, ``--max-record-lead``): whoever can produce to the topic cannot
make a partition for every day of the calendar. Records outside the window are dead-lettered as
``timestamp_out_of_window``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from .errors import RecordError
from .rows import partition_day

__all__ = ["ANY_TIME", "TimestampWindow", "WindowBounds"]


@dataclass(frozen=True, slots=True)
class TimestampWindow:
    """The scoring timestamps a worker stores, relative to its clock: at most ``max_age_s`` before it and
    ``max_lead_s`` after it (None: no bound). Far past and future records would each make a daily partition.

    ``TimestampWindow(...).at(now)`` gives the bounds for a batch; records outside them are dead-lettered as
    ``timestamp_out_of_window``.
    """

    max_age_s: float | None = None
    max_lead_s: float | None = None

    def at(self, now: datetime) -> WindowBounds:
        earliest = None if self.max_age_s is None else now - timedelta(seconds=self.max_age_s)
        latest = None if self.max_lead_s is None else now + timedelta(seconds=self.max_lead_s)
        return WindowBounds(self, now, earliest, latest)


@dataclass(frozen=True, slots=True)
class WindowBounds:
    """A :class:`TimestampWindow` at one instant (``now``): the earliest and latest timestamps it accepts."""

    window: TimestampWindow
    now: datetime
    earliest: datetime | None
    latest: datetime | None

    def holds(self, scoring_timestamp: datetime) -> bool:
        earliest, latest = self.earliest, self.latest
        return (earliest is None or scoring_timestamp >= earliest) and (latest is None or scoring_timestamp <= latest)

    def day_of(self, scoring_timestamp: datetime) -> date:
        """:func:`partition_day` of a timestamp within the bounds; raises RecordError (``timestamp_out_of_window``)
        for one outside them."""
        if not self.holds(scoring_timestamp):
            too_old = self.earliest is not None and scoring_timestamp < self.earliest
            limit = self.window.max_age_s if too_old else self.window.max_lead_s
            flag = "--max-record-age" if too_old else "--max-record-lead"
            raise RecordError(
                "timestamp_out_of_window",
                "scoring_timestamp",
                f"{scoring_timestamp.isoformat()} is more than {_duration(limit or 0)} "
                f"{'before' if too_old else 'after'} the worker's clock ({self.now.isoformat(timespec='seconds')}); "
                f"the worker stores records within that window ({flag})",
            )
        return partition_day(scoring_timestamp)


ANY_TIME: Final = TimestampWindow().at(datetime(1970, 1, 1, tzinfo=UTC))
"""Bounds that accept every timestamp a partition can hold."""


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"
