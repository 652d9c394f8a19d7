"""``stream-logger consume``: run a consumer worker."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Any

from ..contract import DEFAULT_MAX_RECORD_BYTES
from ..worker import Worker, WorkerConfig, WorkerSummary
from ._options import add_connection_options, add_limit_options, limit_overrides, settings_from

__all__ = ["install_stop_signals", "print_summary", "register", "tune_gc"]

log = logging.getLogger("stream_logger.cli")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "consume",
        help="run a consumer worker: Kafka topics into a datamart, exactly once",
        description="Read scoring records from Kafka topics as a member of consumer group GROUP and write them, "
        "exactly once, into the datamart SCHEMA (created with 'stream-logger datamart setup'). Invalid records go "
        "to the dead-letter table with their reason. Run several workers with the same --group to share the "
        "partitions. SIGTERM/SIGINT stop after the current batch; a second signal exits at once.",
    )
    p.add_argument("--topic", action="append", required=True, metavar="T", help="a topic to read (repeatable)")
    p.add_argument("--group", default="stream-logger", metavar="G", help="consumer group (default: stream-logger)")
    p.add_argument("--schema", required=True, metavar="S", help="the datamart schema to write into")
    p.add_argument("--batch-max-records", type=int, default=5000, metavar="N", help="default: 5000")
    p.add_argument("--batch-max-bytes", type=int, default=8 * 1024 * 1024, metavar="B", help="default: 8 MiB")
    p.add_argument(
        "--flush-interval-ms", type=int, default=500, metavar="MS", help="oldest record's wait at most (default 500)"
    )
    p.add_argument(
        "--max-in-flight-batches",
        type=int,
        default=2,
        metavar="N",
        help="prepared batches waiting for the database before fetching pauses (default: 2)",
    )
    p.add_argument(
        "--max-record-bytes",
        type=int,
        default=DEFAULT_MAX_RECORD_BYTES,
        metavar="B",
        help=f"larger records are dead-lettered as too_large (default: {DEFAULT_MAX_RECORD_BYTES})",
    )
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve /metrics, /healthz, /readyz on PORT")
    p.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="HOST",
        help="the address --metrics-port listens on (default: 0.0.0.0, every interface; 127.0.0.1: this host only)",
    )
    p.add_argument("--shutdown-grace-s", type=float, default=30.0, metavar="S", help="default: 30")
    p.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every assigned partition reached the end offset it had at start",
    )
    p.add_argument(
        "--no-auto-register",
        action="store_true",
        help="dead-letter records of undeclared subscriptions instead of registering them",
    )
    add_limit_options(p, from_env=True, max_subscriptions="200", max_age="30d", max_lead="1d")
    add_connection_options(p)
    p.set_defaults(func=_consume)


def _consume(args: argparse.Namespace) -> int:
    config = WorkerConfig(
        topics=tuple(args.topic),
        group_id=args.group,
        schema=args.schema,
        batch_max_records=args.batch_max_records,
        batch_max_bytes=args.batch_max_bytes,
        flush_interval_ms=args.flush_interval_ms,
        max_in_flight_batches=args.max_in_flight_batches,
        max_record_bytes=args.max_record_bytes,
        shutdown_grace_s=args.shutdown_grace_s,
        until_caught_up=args.until_caught_up,
        auto_register=not args.no_auto_register,
        metrics_port=args.metrics_port,
        **limit_overrides(args),
        metrics_host=args.metrics_host,
    )
    worker = Worker(config, settings_from(args))
    summary = asyncio.run(_run(worker))
    print_summary(summary)
    return 0


def tune_gc() -> None:
    """Fewer cyclic-GC passes: a worker allocates many containers per record that live as long as their batch,
    and with low thresholds the collector re-scans every batch in flight over and over (measured: 12-16% of the
    worker's CPU at (5_000, 10, 10), against ~2% here). Objects alive at start-up are frozen out of its sight.
    Process-wide, so done here, not in the library."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _run(worker: Worker) -> WorkerSummary:
    tune_gc()
    install_stop_signals(worker.request_stop)
    async with worker:
        return await worker.run()


def install_stop_signals(request_stop: Any) -> None:
    """First SIGINT/SIGTERM: stop gracefully. Second: exit at once (transactions leave nothing half-written)."""
    loop = asyncio.get_running_loop()
    seen = 0

    def on_signal(name: str) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            log.info("%s: stopping after the current batch (send it again to exit at once)", name)
            request_stop()
        else:
            log.warning("%s again: exiting now", name)
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)


def print_summary(summary: WorkerSummary) -> None:
    rate = summary.messages / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    reasons = ", ".join(f"{code} {n}" for code, n in sorted(summary.dead_letters.items()))
    print(
        f"{summary.messages} messages in {summary.elapsed_s:.1f}s ({rate:,.0f}/s): {summary.rows} rows written, "
        f"{summary.dead_lettered} dead-lettered{f' ({reasons})' if reasons else ''}, "
        f"{summary.duplicates_skipped} duplicate rows skipped",
        file=sys.stderr,
    )
