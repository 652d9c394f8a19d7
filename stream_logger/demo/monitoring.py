"""The demo's monitors: fairness, quality, drift and traffic for its model, declared, evaluated and shown.

The population shifts halfway through the demo (younger applicants, larger loans: see
:class:`~stream_logger.demo.applicants.ApplicantGenerator`), so the drift monitor compares the second half of the
run with the first; the others evaluate the whole run. What it prints is ``stream-logger monitor show``'s table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ..evaluation import Window
from ..measurements import format_latest, latest
from ..monitor_run import run_monitors
from ..monitors import MonitorDefinition, parse_monitors, store_monitors
from .model import NO_RISK, RISK

__all__ = ["Timeline", "demo_monitors", "evaluate_demo_monitors"]


@dataclass(frozen=True, slots=True)
class Timeline:
    """When the demo's calls began, when its population shifted, and when they ended (scoring timestamps)."""

    start: datetime
    shift: datetime
    end: datetime


def demo_monitors(subscription_id: str, timeline: Timeline) -> dict[str, Any]:
    """The monitors file of the demo's subscription (its format: :mod:`stream_logger.monitors`)."""
    return {
        "subscription_id": subscription_id,
        "monitors": [
            {
                "name": "fairness",
                "kind": "fairness",
                "favourable": [NO_RISK],
                "attributes": [
                    {"field": "Sex", "reference": ["male"], "monitored": ["female"]},
                    {"field": "Age", "reference": [[26, 120]], "monitored": [[18, 25]]},
                ],
            },
            {
                "name": "quality",
                "kind": "quality",
                "problem_type": "binary",
                "positive_class": RISK,
                "probability_index": 1,  # [P(No Risk), P(Risk)]
                "thresholds": {"accuracy": {"min": 0.7}, "auc_roc": {"min": 0.7}},
            },
            {
                "name": "drift",
                "kind": "drift",
                "baseline": {"from": timeline.start.isoformat(), "to": timeline.shift.isoformat()},
                "features": ["Age", "LoanAmount", "LoanDuration", "Sex", "CheckingStatus"],
            },
            {"name": "traffic", "kind": "traffic", "thresholds": {"error_rate": {"max": 0.05}}},
        ],
    }


async def evaluate_demo_monitors(
    conn: asyncpg.Connection, schema: str, subscription_id: str, timeline: Timeline
) -> str:
    """Declare the demo's monitors, evaluate them (drift over the shifted half, the others over the whole run) and
    return ``monitor show``'s table."""
    monitors = parse_monitors(demo_monitors(subscription_id, timeline))
    await store_monitors(conn, schema, monitors)
    end = timeline.end + timedelta(seconds=1)
    whole, shifted = Window(timeline.start, end), Window(timeline.shift, end)

    def window_for(monitor: MonitorDefinition) -> Window:
        return shifted if monitor.kind == "drift" else whole

    await run_monitors(conn, schema, subscription_id=subscription_id, window_for=window_for)
    return format_latest(await latest(conn, schema, subscription_id))
