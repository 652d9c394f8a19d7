"""``stream-logger subscription add|list``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import SubscriptionError
from ._options import add_connection_options, in_datamart, read_json

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("subscription", help="declare or list the monitored deployments of a datamart")
    sub = parser.add_subparsers(dest="subscription_command", metavar="ACTION", required=True)

    add = sub.add_parser(
        "add",
        help="declare a subscription (fields, types, roles) from a JSON file",
        description="Declare a subscription, or add fields to one. See examples/german_credit_subscription.json.",
    )
    add.add_argument("--schema", required=True, help="the datamart's schema name")
    add.add_argument("--file", required=True, type=Path, help="subscription.json")
    add_connection_options(add, kafka=False)
    add.set_defaults(func=_add)

    list_ = sub.add_parser("list", help="the subscriptions and their fields")
    list_.add_argument("--schema", required=True, help="the datamart's schema name")
    list_.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_connection_options(list_, kafka=False)
    list_.set_defaults(func=_list)


def _read_spec(path: Path) -> dict[str, Any]:
    spec = read_json(path, SubscriptionError)
    if not isinstance(spec, dict):
        raise SubscriptionError(f"{path}: expected a JSON object")
    return spec


def _add(args: argparse.Namespace) -> int:
    spec = _read_spec(args.file)

    sub = in_datamart(args, lambda conn: registry.declare(conn, args.schema, spec))
    target = f", target {sub.target.name!r}" if sub.target is not None else ""
    print(f"subscription {sub.subscription_id!r}: table {sub.table}, {len(sub.fields)} fields{target}")
    return 0


def _list(args: argparse.Namespace) -> int:
    subs = in_datamart(args, lambda conn: registry.list_subscriptions(conn, args.schema))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "subscription_id": s.subscription_id,
                        "table": s.table,
                        "deployment_id": s.deployment_id,
                        "asset_revision": s.asset_revision,
                        "evolve": s.evolve,
                        "auto_registered": s.auto_registered,
                        "fields": [f.as_json() for f in s.stored_fields],
                    }
                    for s in subs
                ],
                indent=2,
            )
        )
        return 0
    if not subs:
        print(f"no subscriptions in {args.schema}")
    for s in subs:
        how = "auto-registered" if s.auto_registered else "declared"
        print(f"{s.subscription_id}  table {s.table}  ({how}, evolve={'yes' if s.evolve else 'no'})")
        for f in s.stored_fields:
            print(f"    {f.name!r:32} -> {f.column:32} {f.role:12} {f.type}")
    return 0
