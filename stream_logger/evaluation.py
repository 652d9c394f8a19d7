"""What one evaluation of a monitor gives: its metrics over a window of time, each a value or the reason there is none.

The monitors (fairness, quality, drift, traffic) compute their metrics in PostgreSQL over a :class:`Window` and
return :class:`MetricValue` objects; the framework adds each metric's threshold and whether it is breached, and
stores them as measurements. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = ["OK", "STATES", "MetricValue", "Window"]

OK: Final = "ok"
STATES: Final = frozenset(
    {
        OK,  # a value
        "no_data",  # the window holds no rows
        "too_few_records",  # fewer rows than the monitor's minimum (a group, or the window)
        "no_labels",  # a quality metric, and no labelled rows in the window
        "single_class",  # a metric that needs both classes (AUC, a group's rate ratio) and the window has one
        "not_in_baseline",  # a drift metric of a feature the baseline lacks
        "undefined",  # the arithmetic has no value (a rate ratio over a zero rate)
    }
)
"""A metric's state: ``ok`` with a value, else why it has none (then its value is None)."""


@dataclass(frozen=True, slots=True)
class Window:
    """The time range ``[start, end)`` a monitor is evaluated over (timezone-aware)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window's bounds need a timezone")
        if not self.start < self.end:
            raise ValueError(f"a window must end after it starts: {self.start} .. {self.end}")


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One metric of one evaluation: ``value`` (None unless ``state`` is ``ok``) and JSON-ready ``details`` (group
    counts, bins, a confusion matrix)."""

    name: str
    value: float | None
    state: str = OK
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown metric state {self.state!r}")
        if (self.value is None) == (self.state == OK):
            raise ValueError(f"metric {self.name}: a value goes with the state ok, and only with it")
