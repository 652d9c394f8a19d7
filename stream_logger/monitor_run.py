"""Evaluating a datamart's monitors over their windows, and storing the measurements.

Each monitor is evaluated over a window: the one given (``--from``/``--to``), else the monitor's own length ending
at the end of the current minute (so that it holds what was just logged, and runs within one minute evaluate one
window, which replaces its measurements). The aggregation runs in PostgreSQL (:mod:`stream_logger.monitor_fairness`,
:mod:`stream_logger.monitor_quality` over the labelled view, :mod:`stream_logger.monitor_drift`,
:mod:`stream_logger.monitor_traffic`);
:mod:`stream_logger.measurements` stores the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg

from .datamart import require_datamart
from .errors import ConfigError, MonitorError
from .evaluation import MetricValue, Window
from .feedback_tables import feedback_table_exists
from .identifiers import feedback_names_for, quote_ident
from .measurements import Measurement, measure, store_measurements
from .monitor_drift import DriftFeature, SampleBaseline, WindowBaseline, drift_metrics
from .monitor_fairness import fairness_metrics
from .monitor_quality import BINARY_METRICS, MULTICLASS_METRICS, REGRESSION_METRICS, quality_metrics
from .monitor_traffic import traffic_metrics
from .monitors import MonitorDefinition, field_column, list_monitors, prediction_field
from .registry import list_subscriptions
from .subscription import Subscription

__all__ = ["RunSummary", "evaluate", "run_monitors", "window_of"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunSummary:
    """What one run did: the measurements stored, and the monitors it could not evaluate (with why)."""

    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[tuple[MonitorDefinition, str]] = field(default_factory=list)


def window_of(monitor: MonitorDefinition, now: datetime) -> Window:
    """The monitor's own window ending at the end of ``now``'s minute (so that it holds what was just logged)."""
    end = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return Window(end - timedelta(seconds=monitor.window_s), end)


async def evaluate(
    conn: asyncpg.Connection, sub: Subscription, monitor: MonitorDefinition, window: Window
) -> list[MetricValue]:
    """The metrics of ``monitor`` over ``window`` for ``sub``."""
    if monitor.kind == "fairness":
        return await fairness_metrics(conn, sub, monitor.spec, window)
    if monitor.kind == "traffic":
        return await traffic_metrics(conn, sub, window)
    if monitor.kind == "quality":
        return await _quality(conn, sub, monitor.spec, window)
    if monitor.kind == "drift":
        return await _drift(conn, sub, monitor.spec, window)
    raise MonitorError(f"monitor {monitor.name!r}: kind {monitor.kind!r} is not evaluated by this version")


async def _quality(
    conn: asyncpg.Connection, sub: Subscription, spec: Mapping[str, Any], window: Window
) -> list[MetricValue]:
    """The quality metrics over the subscription's labelled rows; every one ``no_labels`` before the first label."""
    problem_type = spec["problem_type"]
    if sub.target is None or not await feedback_table_exists(conn, sub):
        return [MetricValue(name, None, "no_labels") for name in _QUALITY_METRICS[problem_type]]
    prediction, _ = field_column(sub, prediction_field(sub, spec["prediction_field"]), ("prediction", "response"))
    probability = spec["probability_field"]
    if probability is None:
        found = next((f for f in sub.fields if f.role == "probability"), None)
        probability_column = None if found is None else found.column
    else:
        probability_column, _ = field_column(sub, probability, ("probability", "response"))
    _, view = feedback_names_for(sub.table)
    index = spec["probability_index"]
    if index is None and problem_type == "binary" and probability_column is not None:
        index = 1  # [P(other), P(positive)], as OpenScale's and scikit-learn's two-class probabilities are
    return await quality_metrics(
        conn,
        f"{quote_ident(sub.schema)}.{quote_ident(view)}",
        window,
        problem_type=problem_type,
        prediction=prediction,
        target=sub.target.column,
        probability=probability_column,
        positive_class=spec["positive_class"],
        probability_index=index,
        min_records=spec["min_records"],
    )


_DRIFT_KINDS: Final = {"bigint": "numeric", "float8": "numeric", "text": "categorical", "boolean": "categorical"}


async def _drift(
    conn: asyncpg.Connection, sub: Subscription, spec: Mapping[str, Any], window: Window
) -> list[MetricValue]:
    """The drift metrics of the features named (else every feature whose type bins: numbers, text, booleans)."""
    names = spec["features"] or [f.name for f in sub.fields if f.role == "feature" and f.type in _DRIFT_KINDS]
    if not names:
        raise MonitorError(f"subscription {sub.subscription_id!r} has no feature to watch for drift")
    features = []
    for name in names:
        column, type_ = field_column(sub, name, ("feature", "meta"))
        if type_ not in _DRIFT_KINDS:
            raise MonitorError(f"field {name!r} is {type_}: drift bins numbers, text and booleans")
        features.append(DriftFeature(name, column, _DRIFT_KINDS[type_]))  # type: ignore[arg-type]
    where = spec["baseline"]
    baseline = (
        SampleBaseline(Path(where["sample"])) if "sample" in where else WindowBaseline(where["from"], where["to"])
    )
    return await drift_metrics(
        conn,
        f"{quote_ident(sub.schema)}.{quote_ident(sub.table)}",
        window,
        baseline,
        features,
        bins=spec["bins"],
        threshold=spec["psi_threshold"],
        min_records=spec["min_records"],
    )


_QUALITY_METRICS = {"binary": BINARY_METRICS, "multiclass": MULTICLASS_METRICS, "regression": REGRESSION_METRICS}


async def run_monitors(
    conn: asyncpg.Connection,
    schema: str,
    *,
    subscription_id: str | None = None,
    window: Window | None = None,
    now: datetime | None = None,
    window_for: Callable[[MonitorDefinition], Window | None] | None = None,
) -> RunSummary:
    """Evaluate every monitor (of one subscription, or all) once and store its measurements: over
    ``window_for(monitor)`` when it gives one, else ``window``, else the monitor's own window ending ``now``."""
    await require_datamart(conn, schema)
    subs = {s.subscription_id: s for s in await list_subscriptions(conn, schema)}
    summary = RunSummary()
    for monitor, _ in await list_monitors(conn, schema, subscription_id):
        sub = subs.get(monitor.subscription_id)
        if sub is None:
            summary.skipped.append((monitor, "its subscription has no payload table yet"))
            continue
        span = (window_for(monitor) if window_for else None) or window or window_of(monitor, now or datetime.now(UTC))
        try:
            values = await evaluate(conn, sub, monitor, span)
        except (MonitorError, ConfigError) as exc:  # a field it lacks, of a type it cannot take: say so, go on
            summary.skipped.append((monitor, str(exc)))
            continue
        rows = measure(monitor, span, values)
        await store_measurements(conn, schema, monitor, span, rows)
        summary.measurements += rows
    return summary
