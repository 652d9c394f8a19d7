"""``stream-logger datamart setup|info``."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .. import datamart
from ._db import connect
from ._options import add_connection_options, settings_from

__all__ = ["format_info", "register"]


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


def _setup(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with connect(settings_from(args)) as conn:
            return await datamart.setup(conn, args.schema, drop_existing=args.drop_existing)

    version = asyncio.run(run())
    print(f"datamart {args.schema!r} is at version {version}")
    return 0


def _info(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with connect(settings_from(args)) as conn:
            return await datamart.info(conn, args.schema)

    summary = asyncio.run(run())
    print(json.dumps(summary, indent=2) if args.json else format_info(summary))
    return 0


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
