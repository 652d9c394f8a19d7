"""``stream-logger demo``: sample German-credit traffic through Kafka into a datamart, then a summary."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from ..demo.labels import DEFAULT_LABEL_SHARE
from ..demo.run import DemoOptions, run_demo
from ..identifiers import validate_schema_name
from ._options import add_connection_options, settings_from

__all__ = ["register"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="the demo: a German-credit model service logging through Kafka into a fresh datamart",
        description="Declare the GermanCreditRiskModel subscription in a fresh datamart schema, run a synthetic "
        "model service that scores applicants and logs every call through the emitter, ingest the topic with "
        "consumer workers while showing progress, then print a summary read back from the datamart with SQL "
        "(volume over time, prediction mix, a first fairness view) and the SQL to explore it yourself. A few "
        "deliberately malformed messages show the dead-letter table at work. The schema is recreated each run.",
    )
    p.add_argument("--records", type=int, default=2000, metavar="N", help="scoring calls to log (default: 2000)")
    p.add_argument("--rate", type=float, default=400.0, metavar="R", help="calls per second; 0: as fast as possible")
    p.add_argument(
        "--history-days",
        type=int,
        default=0,
        metavar="D",
        help="back-date timestamps evenly over the last D days (a backfill); default: now",
    )
    p.add_argument("--workers", type=int, default=2, metavar="K", help="consumer workers (default: 2)")
    p.add_argument("--schema", default="demo", metavar="S", help="datamart schema, recreated (default: demo)")
    p.add_argument("--topic", metavar="T", help="topic to create (default: stream_logger_demo_<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic applicants (default: 0)")
    p.add_argument(
        "--label-share",
        type=float,
        default=DEFAULT_LABEL_SHARE,
        metavar="F",
        help=f"share of the calls whose true outcome is logged later, as labels (default: {DEFAULT_LABEL_SHARE})",
    )
    add_connection_options(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    validate_schema_name(args.schema)
    if args.records < 0 or args.workers < 1 or args.history_days < 0 or not 0 <= args.label_share <= 1:
        raise SystemExit(
            "stream-logger demo: --records and --history-days must be >= 0, --workers >= 1, --label-share in 0..1"
        )
    options = DemoOptions(
        records=args.records,
        rate_per_s=args.rate,
        history_days=args.history_days,
        workers=args.workers,
        schema=args.schema,
        topic=args.topic,
        seed=args.seed,
        label_share=args.label_share,
    )
    # the live display says what the workers do; their own INFO lines would only interleave with it
    quiet = max(logging.WARNING, logging.getLogger().level)
    logging.getLogger("stream_logger.worker").setLevel(quiet)
    logging.getLogger("aiokafka").setLevel(max(logging.ERROR, quiet))  # e.g. "rebalancing" while workers join
    settings = settings_from(args)
    result = asyncio.run(run_demo(options, settings, sys.stdout))
    print(f"\nExplore it yourself: psql '{settings.redacted_dsn}' (the password is in STREAM_LOGGER_DSN, or ")
    print("'stream_logger' on the dev stack), then: SET search_path TO " + options.schema + ";")
    missed = [m.label for m, code in result.malformed if code != m.expected_error_code]
    return 1 if missed or result.summary.total_requests < result.emitted else 0
