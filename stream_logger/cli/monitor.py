"""``stream-logger monitor add|list|run|show``: monitors over the datamart, evaluated as measurements."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from ..datamart import connect
from ..errors import MonitorError
from ..evaluation import Window
from ..measurements import Measurement, format_latest, latest
from ..metrics import MetricsServer, MonitorMetrics
from ..monitor_run import RunSummary, run_monitors
from ..monitors import list_monitors, parse_monitors, store_monitors
from ._options import add_connection_options, duration_s, in_datamart, read_json, settings_from, timestamp

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "monitor", help="fairness, quality, drift and traffic monitors over a datamart, as measurements"
    )
    sub = parser.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)

    add = sub.add_parser(
        "add", help="declare monitors from a JSON file", description="See examples/monitors.json for the format."
    )
    add.add_argument("--schema", required=True, help="the datamart's schema name")
    add.add_argument("--file", required=True, type=Path, help="monitors.json")
    add.set_defaults(func=_add)

    list_ = sub.add_parser("list", help="the declared monitors")
    list_.add_argument("--schema", required=True, help="the datamart's schema name")
    list_.add_argument("--subscription", metavar="ID", help="only this subscription's")
    list_.add_argument("--json", action="store_true", help="print JSON instead of a table")
    list_.set_defaults(func=_list)

    run = sub.add_parser(
        "run",
        help="evaluate the monitors and store their measurements",
        description="Evaluate each monitor over its window (its length, ending now), or over --from/--to, and store "
        "one measurement a metric; evaluating a window again replaces its measurements.",
    )
    run.add_argument("--schema", required=True, help="the datamart's schema name")
    run.add_argument("--subscription", metavar="ID", help="only this subscription's monitors")
    when = run.add_mutually_exclusive_group(required=True)
    when.add_argument("--once", action="store_true", help="evaluate once, then exit")
    when.add_argument("--every", type=duration_s, metavar="DURATION", help="evaluate every DURATION (5m) until stopped")
    run.add_argument("--from", dest="start", type=timestamp, metavar="T", help="a fixed window's start (ISO 8601)")
    run.add_argument("--to", dest="end", type=timestamp, metavar="T", help="a fixed window's end (ISO 8601)")
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="with --every: serve the latest values and breaches as Prometheus gauges on this port (/metrics)",
    )
    run.set_defaults(func=_run)

    show = sub.add_parser("show", help="the latest value of each metric, its threshold, its state and history")
    show.add_argument("--schema", required=True, help="the datamart's schema name")
    show.add_argument("--subscription", metavar="ID", help="only this subscription's")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(func=_show)
    for p in (add, list_, run, show):
        add_connection_options(p, kafka=False)


def _add(args: argparse.Namespace) -> int:
    monitors = parse_monitors(read_json(args.file, MonitorError))

    in_datamart(args, lambda conn: store_monitors(conn, args.schema, monitors))
    names = ", ".join(f"{m.name} ({m.kind})" for m in monitors)
    print(f"subscription {monitors[0].subscription_id!r}: {len(monitors)} monitor(s): {names}")
    return 0


def _list(args: argparse.Namespace) -> int:
    found = in_datamart(args, lambda conn: list_monitors(conn, args.schema, args.subscription))
    if args.json:
        print(json.dumps([{**m.definition, "subscription_id": m.subscription_id, "version": v} for m, v in found]))
        return 0
    if not found:
        print(f"no monitors in {args.schema}")
    for m, version in found:
        print(f"{m.subscription_id}  {m.name}  {m.kind}  window {m.window_s:g}s  (version {version})")
    return 0


def _run(args: argparse.Namespace) -> int:
    if (args.start is None) != (args.end is None):
        raise MonitorError("give both --from and --to, or neither")
    try:
        window = None if args.start is None else Window(args.start, args.end)
    except ValueError as exc:
        raise MonitorError(str(exc)) from None
    if window is not None and args.every:
        raise MonitorError("--every evaluates the latest windows: it takes no --from/--to")
    if args.metrics_port is not None and not args.every:
        raise MonitorError("--metrics-port serves the gauges of a long run: use it with --every")
    if not args.every:
        asyncio.run(_evaluate_once(args, window))
        return 0
    metrics = MonitorMetrics()
    server = None if args.metrics_port is None else MetricsServer(metrics, args.metrics_port, ready=lambda: True)
    if server is not None:
        server.start()
    try:
        return asyncio.run(_evaluate_every(args, metrics))
    finally:
        if server is not None:
            server.stop()


async def _evaluate_once(args: argparse.Namespace, window: Window | None) -> RunSummary:
    async with connect(settings_from(args).dsn) as conn:
        summary = await run_monitors(conn, args.schema, subscription_id=args.subscription, window=window)
    _report(summary)
    return summary


async def _evaluate_every(args: argparse.Namespace, metrics: MonitorMetrics) -> int:
    """Evaluate, then wait ``--every``, until SIGTERM or SIGINT (a clean exit, as a container's stop asks)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set():
        metrics.update((await _evaluate_once(args, None)).measurements)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.every)
    return 0


def _report(summary: RunSummary) -> None:
    breached = [m for m in summary.measurements if m.breached]
    monitors = {(m.subscription_id, m.monitor) for m in summary.measurements}
    print(f"{len(summary.measurements)} measurement(s) of {len(monitors)} monitor(s), {len(breached)} breached")
    for m in breached:
        print(f"  BREACHED {m.subscription_id} {m.monitor} {m.metric} = {m.value:.4g} ({m.limits})")
    for monitor, why in summary.skipped:
        print(f"  skipped {monitor.subscription_id} {monitor.name}: {why}")


def _show(args: argparse.Namespace) -> int:
    found = in_datamart(args, lambda conn: latest(conn, args.schema, args.subscription))
    if args.json:
        print(json.dumps([_as_json(m, history) for m, history in found], default=str))
        return 0
    if not found:
        print(f"no measurements in {args.schema}: run 'stream-logger monitor run --schema {args.schema} --once'")
        return 0
    print(format_latest(found))
    return 0


def _as_json(m: Measurement, history: list[float | None]) -> dict[str, Any]:
    return {
        "subscription_id": m.subscription_id,
        "monitor": m.monitor,
        "metric": m.metric,
        "value": m.value,
        "state": m.state,
        "breached": m.breached,
        "threshold_min": m.threshold_min,
        "threshold_max": m.threshold_max,
        "window_start": m.window_start.isoformat(),
        "window_end": m.window_end.isoformat(),
        "details": m.details,
        "history": history,
    }
