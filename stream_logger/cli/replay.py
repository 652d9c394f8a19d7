"""``stream-logger replay``: topics into a fresh datamart schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from datetime import datetime
from typing import Any, TextIO

from ..config import Settings
from ..errors import ConfigError
from ..replay import ReplayPlan, plan_replay
from ..worker import Worker, WorkerSummary
from ._options import add_connection_options, add_limit_options, limit_overrides, settings_from, timestamp
from .consume import install_stop_signals, print_summary, tune_gc

__all__ = ["register"]

log = logging.getLogger("stream_logger.cli")


def _time_or_keyword(keyword: str) -> Any:
    def parse(text: str) -> datetime | None:
        return None if text == keyword else timestamp(text)

    return parse


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="replay topics into a fresh datamart schema",
        description="Read topics from --from to --to (manual assignment: no consumer group is touched) and write "
        "them into the fresh datamart schema NEW through the same pipeline as 'consume', exactly once. Refuses a "
        "schema that already holds data unless --drop-existing (recreate it) or --resume (continue an interrupted "
        "replay into it, towards the same end offsets).",
    )
    p.add_argument("--topic", action="append", required=True, metavar="T", help="a topic to replay (repeatable)")
    p.add_argument("--schema", required=True, metavar="NEW", help="the target datamart schema")
    p.add_argument(
        "--from",
        dest="from_time",
        type=_time_or_keyword("earliest"),
        default=None,
        metavar="earliest|TIME",
        help="start at the earliest offset (default) or the first message at or after an RFC 3339 time",
    )
    p.add_argument(
        "--to",
        dest="to_time",
        type=_time_or_keyword("end"),
        default=None,
        metavar="end|TIME",
        help="stop at the end offsets taken when the replay starts (default) or before an RFC 3339 time",
    )
    p.add_argument("--subscription", action="append", metavar="ID", help="keep only these subscriptions")
    p.add_argument("--drop-existing", action="store_true", help="drop and recreate NEW if it exists")
    p.add_argument("--resume", action="store_true", help="continue an interrupted replay into NEW")
    p.add_argument("--batch-max-records", type=int, default=10_000, metavar="N", help="default: 10000")
    add_limit_options(p, from_env=False, max_subscriptions="200", max_age="none", max_lead="none")
    add_connection_options(p)
    p.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    if args.from_time and args.to_time and args.from_time >= args.to_time:
        raise ConfigError("--from must be before --to")
    settings = settings_from(args)
    summary = asyncio.run(_run(args, settings))
    print_summary(summary)
    return 0


async def _run(args: argparse.Namespace, settings: Settings) -> WorkerSummary:
    plan = await plan_replay(
        settings,
        args.topic,
        args.schema,
        from_time=args.from_time,
        to_time=args.to_time,
        subscriptions=args.subscription,
        drop_existing=args.drop_existing,
        resume=args.resume,
    )
    log.info("replaying %d messages from %d partitions into %s", plan.total, len(plan.start), args.schema)
    config = plan.worker_config(args.schema, batch_max_records=args.batch_max_records, **limit_overrides(args))
    worker = Worker(config, settings)
    tune_gc()
    install_stop_signals(worker.request_stop)
    async with worker:
        show = asyncio.create_task(_show_progress(worker, plan, sys.stderr))
        try:
            return await worker.run()
        finally:
            show.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await show


async def _show_progress(worker: Worker, plan: ReplayPlan, out: TextIO) -> None:
    """A live line on a terminal (records, rate, ETA, per partition); a log line every 10 s otherwise."""
    tty = out.isatty()
    began = time.monotonic()
    total = max(plan.total, 1)
    try:
        while True:
            await asyncio.sleep(0.5 if tty else 10)
            progress = worker.progress()
            done = sum(max(0, min(pos, end) - start) for start, pos, end in progress.values())
            elapsed = time.monotonic() - began
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (plan.total - done) / rate if rate > 0 else float("inf")
            parts = " ".join(
                f"{tp.topic}[{tp.partition}] {100 * (pos - start) / max(end - start, 1):.0f}%"
                for tp, (start, pos, end) in progress.items()
            )
            line = (
                f"{done:,}/{plan.total:,} messages ({100 * done / total:.0f}%), {rate:,.0f}/s, ETA {eta:.0f}s | {parts}"
            )
            if tty:
                out.write("\r\x1b[2K" + line[:200])
                out.flush()
            else:
                log.info("replay progress: %s", line)
    finally:
        if tty:
            out.write("\n")
