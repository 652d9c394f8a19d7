"""``stream-logger datamart setup|info|drop``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, Final

from .. import datamart
from ..retry import pg_errors
from ._options import add_connection_options, settings_from

__all__ = ["format_info", "register"]

PROGRESS_INTERVAL_S: Final = 2.0
"""How often ``datamart drop`` prints its progress to stderr."""

EXIT_NOT_CONFIRMED: Final = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("datamart", help="create, upgrade or inspect a datamart (a PostgreSQL schema)")
    sub = parser.add_subparsers(dest="datamart_command", metavar="ACTION", required=True)

    setup = sub.add_parser("setup", help="create the datamart, or upgrade it to this version (idempotent)")
    setup.add_argument("--schema", required=True, help="the datamart's schema name ([a-z_][a-z0-9_]*)")
    setup.add_argument(
        "--drop-existing", action="store_true", help="drop the schema and everything in it first (data is lost)"
    )
    add_connection_options(setup, kafka=False)
    setup.set_defaults(func=_setup)

    info = sub.add_parser("info", help="row counts per subscription, dead letters and stored offsets")
    info.add_argument("--schema", required=True, help="the datamart's schema name")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_connection_options(info, kafka=False)
    info.set_defaults(func=_info)

    drop = sub.add_parser(
        "drop",
        help="drop a datamart and everything in it, in many short transactions",
        description="Drop the datamart SCHEMA: every payload table and its day partitions, the subscriptions, dead "
        "letters and stored offsets, then the schema. It goes in many short transactions, so a datamart of any "
        "size is dropped without running out of PostgreSQL's lock memory (max_locks_per_transaction). Stop the "
        "workers that write to it first. Without --yes, it prints what would be dropped and exits with status "
        f"{EXIT_NOT_CONFIRMED}. An interrupted drop is finished by running it again; a schema that does not exist "
        "is left as it is, and one that is not a datamart is refused.",
    )
    drop.add_argument("--schema", required=True, help="the datamart's schema name")
    drop.add_argument("--yes", action="store_true", help="really drop it (the data is lost)")
    drop.add_argument(
        "--relations-per-transaction",
        type=int,
        default=datamart.DEFAULT_RELATIONS_PER_TRANSACTION,
        metavar="N",
        help="tables, indexes and TOAST tables dropped in one transaction; each takes about two of the server's "
        f"locks (default {datamart.DEFAULT_RELATIONS_PER_TRANSACTION})",
    )
    add_connection_options(drop, kafka=False)
    drop.set_defaults(func=_drop)


def _setup(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with datamart.connect(settings_from(args).dsn) as conn:
            return await datamart.setup(conn, args.schema, drop_existing=args.drop_existing)

    version = asyncio.run(run())
    print(f"datamart {args.schema!r} is at version {version}")
    return 0


def _info(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with datamart.connect(settings_from(args).dsn) as conn:
            return await datamart.info(conn, args.schema)

    summary = asyncio.run(run())
    print(json.dumps(summary, indent=2) if args.json else format_info(summary))
    return 0


class _DropProgress:
    """Prints ``dropped N of M relations`` to stderr, at most every PROGRESS_INTERVAL_S."""

    def __init__(self) -> None:
        self._next_at = time.monotonic() + PROGRESS_INTERVAL_S

    def __call__(self, dropped: int, total: int) -> None:
        now = time.monotonic()
        if now >= self._next_at and dropped < total:
            self._next_at = now + PROGRESS_INTERVAL_S
            print(f"dropped {dropped} of {total} relations", file=sys.stderr, flush=True)


def _drop(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with datamart.connect(settings_from(args).dsn) as conn:
            with pg_errors(f"dropping datamart {args.schema!r}"):
                found = await datamart.contents(conn, args.schema)
                if found is not None and not args.yes:
                    print(
                        f"stream-logger: datamart {found.schema!r} holds {found.subscriptions} subscriptions, "
                        f"{found.tables} tables and {found.partitions} partitions ({found.relations} relations), "
                        f"about {found.rows_estimate} rows (PostgreSQL's estimate); nothing was dropped: add --yes "
                        "to drop it",
                        file=sys.stderr,
                    )
                    return EXIT_NOT_CONFIRMED
                summary = await datamart.drop(
                    conn,
                    args.schema,
                    relations_per_transaction=args.relations_per_transaction,
                    on_progress=_DropProgress(),
                )
        if summary.existed:
            print(
                f"dropped datamart {args.schema!r}: {summary.relations_dropped} relations "
                f"in {summary.transactions} transactions"
            )
        else:
            print(f"schema {args.schema!r} does not exist: nothing to drop")
        return 0

    return asyncio.run(run())


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]


def format_info(summary: dict[str, Any]) -> str:
    """The human-readable form of :func:`stream_logger.datamart.info`'s result."""
    lines = [
        f"datamart {summary['schema']} (version {summary['version']}): {summary['payload_rows']} payload rows, "
        f"{summary['dead_letters']} dead letters",
        "",
    ]
    subs = summary["subscriptions"]
    if subs:
        lines += _table(
            ["SUBSCRIPTION", "TABLE", "ROWS", "FIELDS"],
            [[s["subscription_id"], s["table"], s["rows"], s["fields"]] for s in subs],
        )
    else:
        lines.append("no subscriptions yet")
    lines.append("")
    offsets = summary["offsets"]
    if offsets:
        lines += _table(
            ["GROUP", "TOPIC", "PARTITION", "NEXT OFFSET"],
            [[o["group"], o["topic"], o["partition"], o["next_offset"]] for o in offsets],
        )
    else:
        lines.append("no stored offsets yet")
    return "\n".join(lines)
