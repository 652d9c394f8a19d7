"""Options shared by several commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from ..config import ENV_PREFIX, Settings, parse_duration_s
from ..datamart import connect, require_datamart
from ..errors import ConfigError, StreamLoggerError
from ..kafka_config import SECURITY_SETTINGS, KafkaClientConfig, flag_name, is_secret, keyword_name
from ..kafka_config import env_name as kafka_env_name

__all__ = [
    "add_connection_options",
    "add_limit_options",
    "duration_s",
    "in_datamart",
    "limit_overrides",
    "read_json",
    "settings_from",
    "timestamp",
]

T = TypeVar("T")

_NO_LIMIT = ("none", "off", "unlimited")


def add_connection_options(parser: argparse.ArgumentParser, kafka: bool = True, postgres: bool = True) -> None:
    """Add ``--bootstrap-servers`` and/or ``--dsn``."""
    if kafka:
        parser.add_argument(
            "--bootstrap-servers",
            metavar="HOST:PORT[,...]",
            help="Kafka brokers (env STREAM_LOGGER_BOOTSTRAP_SERVERS; default 127.0.0.1:9092, the dev stack)",
        )
        kafka_options = parser.add_argument_group(
            "Kafka security", "flag, else environment, else --kafka-config's file, else default (PLAINTEXT)"
        )
        kafka_options.add_argument(
            "--kafka-config",
            metavar="FILE",
            help="a properties file of Kafka client settings, as confluent-kafka names them (security.protocol=..., "
            "client.id=...) (env STREAM_LOGGER_KAFKA_CONFIG)",
        )
        for name, help_text in SECURITY_SETTINGS.items():
            kafka_options.add_argument(
                flag_name(name), metavar="SECRET" if is_secret(name) else "VALUE", dest=keyword_name(name),
                help=f"{name}: {help_text} (env {kafka_env_name(name)})",
            )  # fmt: skip
    if postgres:
        parser.add_argument(
            "--dsn",
            metavar="postgresql://...",
            help="PostgreSQL connection string (env STREAM_LOGGER_DSN; default: the dev stack's database)",
        )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by whichever connection flags the command has."""
    kafka = KafkaClientConfig.load(overrides=vars(args))
    return Settings.from_env(kafka=kafka).with_overrides(
        bootstrap_servers=getattr(args, "bootstrap_servers", None), dsn=getattr(args, "dsn", None)
    )


def in_datamart(args: argparse.Namespace, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``action`` on a connection to the datamart ``args.schema`` (from the command's connection flags); a
    clear error when there is no datamart in that schema."""

    async def run() -> T:
        async with connect(settings_from(args).dsn) as conn:
            await require_datamart(conn, args.schema)
            return await action(conn)

    return asyncio.run(run())


def duration_s(text: str) -> float | None:
    """``30d``, ``12h``, ``90m``, ``45s`` in seconds; ``none`` for no limit (argparse type)."""
    if text.strip().lower() in _NO_LIMIT:
        return None
    try:
        return parse_duration_s(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use a number and s, m, h or d (30d), or none"
        ) from None


def _count(text: str) -> int | None:
    if text.strip().lower() in _NO_LIMIT:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count: use a whole number >= 0, or none")
    return value


def add_limit_options(
    parser: argparse.ArgumentParser, *, from_env: bool, max_subscriptions: str, max_age: str, max_lead: str
) -> None:
    """Add the limits that keep hostile traffic from growing the datamart's catalog without bound:
    ``--max-subscriptions``, ``--max-record-age`` and ``--max-record-lead`` (defaults from the environment when
    ``from_env``, as ``STREAM_LOGGER_MAX_SUBSCRIPTIONS`` and so on)."""

    limits = (
        ("--max-subscriptions", "MAX_SUBSCRIPTIONS", _count, "N|none", max_subscriptions,
         "auto-register at most N subscriptions in the datamart; records of a new one past it are dead-lettered as "
         "subscription_limit"),
        ("--max-record-age", "MAX_RECORD_AGE", duration_s, "DURATION|none", max_age,
         "dead-letter records scored longer ago than this as timestamp_out_of_window"),
        ("--max-record-lead", "MAX_RECORD_LEAD", duration_s, "DURATION|none", max_lead,
         "dead-letter records scored further ahead of this worker's clock as timestamp_out_of_window"),
    )  # fmt: skip
    for flag, env_name, parse, metavar, default, help_text in limits:
        env = f"{ENV_PREFIX}{env_name}"
        parser.add_argument(
            flag,
            type=parse,
            default=os.environ.get(env, default) if from_env else default,
            metavar=metavar,
            help=f"{help_text} ({f'env {env}; ' if from_env else ''}default {default})",
        )


def limit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The WorkerConfig fields of :func:`add_limit_options`' flags."""
    return {
        "max_subscriptions": args.max_subscriptions,
        "max_record_age_s": args.max_record_age,
        "max_record_lead_s": args.max_record_lead,
    }


def timestamp(text: str) -> datetime:
    """An RFC 3339 time with its offset (argparse type)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an RFC 3339 time, got {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add Z or +HH:MM)")
    return when


def read_json(path: Path, error: type[StreamLoggerError]) -> Any:
    """The JSON a file holds; ``error`` saying so when it cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise error(f"{path} is not valid JSON: {exc}") from exc
