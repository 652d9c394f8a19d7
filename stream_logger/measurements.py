"""Measurements: one row per metric of one evaluation of a monitor over a window, in the datamart's
``measurements`` table, with its threshold and whether it is breached.

Storing a window's measurements replaces what an earlier evaluation of the same monitor and window stored (one
transaction), so re-running a window never doubles it. :func:`latest` reads the latest value of each metric with
its recent history, for ``stream-logger monitor show``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from .evaluation import OK, MetricValue, Window
from .identifiers import quote_ident, validate_schema_name
from .monitors import MonitorDefinition

__all__ = ["Measurement", "format_latest", "latest", "measure", "sparkline", "store_measurements"]

_BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True, slots=True)
class Measurement:
    """A metric's value (or the state that says why it has none) over a window, judged against its threshold."""

    subscription_id: str
    monitor: str
    metric: str
    value: float | None
    state: str
    threshold_min: float | None
    threshold_max: float | None
    breached: bool
    window_start: datetime
    window_end: datetime
    details: dict[str, Any] = field(default_factory=dict)
    computed_at: datetime | None = None

    @property
    def status(self) -> str:
        """``breached``, ``ok``, or the state of a metric without a value."""
        return "breached" if self.breached else self.state

    @property
    def limits(self) -> str:
        """Its threshold in words: ``>= 0.8``, ``<= 0.05``, both, or ``-`` for none."""
        parts = [f">= {self.threshold_min:g}" if self.threshold_min is not None else ""]
        parts.append(f"<= {self.threshold_max:g}" if self.threshold_max is not None else "")
        return " and ".join(p for p in parts if p) or "-"


def measure(monitor: MonitorDefinition, window: Window, values: Sequence[MetricValue]) -> list[Measurement]:
    """The measurements of one evaluation: each metric judged against the monitor's threshold for it."""
    out = []
    for v in values:
        threshold = monitor.threshold(v.name)
        out.append(
            Measurement(
                monitor.subscription_id,
                monitor.name,
                v.name,
                v.value,
                v.state,
                threshold.min,
                threshold.max,
                v.state == OK and threshold.breached(v.value),
                window.start,
                window.end,
                v.details,
            )
        )
    return out


async def store_measurements(
    conn: asyncpg.Connection, schema: str, monitor: MonitorDefinition, window: Window, rows: Sequence[Measurement]
) -> None:
    """Replace the measurements of ``monitor`` over ``window`` by ``rows``, in one transaction."""
    q = quote_ident(validate_schema_name(schema))
    async with conn.transaction():
        await conn.execute(
            f"DELETE FROM {q}.measurements WHERE subscription_id = $1 AND monitor = $2 AND window_start = $3 "
            "AND window_end = $4",
            monitor.subscription_id,
            monitor.name,
            window.start,
            window.end,
        )
        await conn.executemany(
            f"""INSERT INTO {q}.measurements (subscription_id, monitor, metric, value, state, threshold_min,
                    threshold_max, breached, window_start, window_end, details)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)""",
            [
                (
                    m.subscription_id,
                    m.monitor,
                    m.metric,
                    m.value,
                    m.state,
                    m.threshold_min,
                    m.threshold_max,
                    m.breached,
                    m.window_start,
                    m.window_end,
                    orjson.dumps(m.details, option=orjson.OPT_NON_STR_KEYS).decode(),
                )
                for m in rows
            ],
        )


async def latest(
    conn: asyncpg.Connection, schema: str, subscription_id: str | None = None, history: int = 20
) -> list[tuple[Measurement, list[float | None]]]:
    """The latest measurement of each metric (of one subscription, or all), by subscription, monitor and metric,
    each with the values of its last ``history`` windows, oldest first."""
    q = quote_ident(validate_schema_name(schema))
    rows = await conn.fetch(
        f"""SELECT *, details::text AS details_text FROM (
                SELECT *, row_number() OVER (PARTITION BY subscription_id, monitor, metric
                                             ORDER BY window_end DESC, window_start DESC) AS age
                FROM {q}.measurements WHERE $1::text IS NULL OR subscription_id = $1) m
            WHERE age <= $2 ORDER BY subscription_id, monitor, metric, age DESC""",
        subscription_id,
        history,
    )
    out: list[tuple[Measurement, list[float | None]]] = []
    values: list[float | None] = []
    for r in rows:
        values.append(r["value"])
        if r["age"] == 1:
            m = Measurement(
                r["subscription_id"],
                r["monitor"],
                r["metric"],
                r["value"],
                r["state"],
                r["threshold_min"],
                r["threshold_max"],
                r["breached"],
                r["window_start"],
                r["window_end"],
                orjson.loads(r["details_text"]),
                r["computed_at"],
            )
            out.append((m, values))
            values = []
    return out


def sparkline(values: Sequence[float | None]) -> str:
    """A line of block characters for ``values`` (oldest first), scaled from their least to their greatest; a
    blank for a window without a value."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    span = high - low
    return "".join(
        " " if v is None else _BARS[0 if span == 0 else round((v - low) / span * (len(_BARS) - 1))] for v in values
    )


def format_latest(found: Sequence[tuple[Measurement, list[float | None]]]) -> str:
    """The latest measurements as ``monitor show`` prints them: a line a metric, with its value, threshold, status
    and history."""
    width = max((len(f"{m.monitor} {m.metric}") for m, _ in found), default=0)
    lines = []
    for m, history in found:
        value = "-" if m.value is None else f"{m.value:.4g}"
        lines.append(
            f"{m.subscription_id}  {f'{m.monitor} {m.metric}':<{width}}  {value:>9}  {m.limits:<18}  "
            f"{m.status:<16}  {sparkline(history)}"
        )
    return "\n".join(lines)
