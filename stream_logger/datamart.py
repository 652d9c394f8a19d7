"""The datamart: one PostgreSQL schema holding the payload tables, subscriptions, dead letters and offsets.

:func:`setup` creates or upgrades a datamart by applying versioned SQL migrations in order. The migrations'
canonical home is ``schemas/datamart/NNNN_name.sql`` at the top of the repository; an identical copy ships inside
the package as ``stream_logger/_schemas/datamart/`` (package data, read with :mod:`importlib.resources`, so an
installed wheel needs no checkout). A unit test fails when the two differ. Each applied migration is recorded in
the schema's own ``schema_migrations`` table; migrations run in one transaction under an advisory lock, so
concurrent ``setup`` calls are safe and a failed upgrade leaves the datamart as it was.

The per-subscription payload tables are created by :mod:`stream_logger.subscriptions`, not by migrations.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import asyncpg

from .errors import DatamartError, DatamartNotFound
from .identifiers import quote_ident, validate_schema_name

__all__ = [
    "MIGRATIONS_PACKAGE_DIR",
    "Migration",
    "advisory_key",
    "info",
    "latest_version",
    "load_migrations",
    "require_datamart",
    "setup",
]

MIGRATIONS_PACKAGE_DIR: Final = ("_schemas", "datamart")
"""Where the migrations live inside the package (a copy of ``schemas/datamart/``)."""

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One ``NNNN_name.sql`` file: applied once, in version order."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    folder = resources.files("stream_logger").joinpath(*MIGRATIONS_PACKAGE_DIR)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise DatamartError(f"the packaged migrations are not numbered 1..N without gaps: {versions}")
    return found


def latest_version() -> int:
    """The datamart version this stream-logger creates."""
    return len(load_migrations())


def advisory_key(*parts: str) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock``, derived from ``parts`` (e.g. schema and table)."""
    digest = hashlib.blake2b("\x1f".join(("stream_logger", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _schema_exists(conn: asyncpg.Connection, schema: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema))


async def _relation_count(conn: asyncpg.Connection, schema: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            schema,
        )
    )


async def _has_migrations_table(conn: asyncpg.Connection, schema: str) -> bool:
    return await conn.fetchval("SELECT to_regclass($1)", f"{quote_ident(schema)}.schema_migrations") is not None


async def _current_version(conn: asyncpg.Connection, schema: str) -> int:
    value = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {quote_ident(schema)}.schema_migrations")
    return int(value)


async def setup(conn: asyncpg.Connection, schema: str, *, drop_existing: bool = False, up_to: int | None = None) -> int:
    """Create the datamart ``schema``, or upgrade it to the latest version; returns the version it is now at.

    Idempotent. ``drop_existing`` drops the whole schema first (everything in it is lost). A schema that exists
    and holds anything but is not a datamart is refused rather than written into. ``up_to`` stops at that
    migration version (for tests of upgrades).
    """
    validate_schema_name(schema)
    migrations = load_migrations()
    target = len(migrations) if up_to is None else up_to
    if not 0 <= target <= len(migrations):
        raise DatamartError(f"unknown datamart version {target}: this stream-logger knows 1..{len(migrations)}")
    q_schema = quote_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(schema, "setup"))
        if drop_existing:
            await conn.execute(f"DROP SCHEMA IF EXISTS {q_schema} CASCADE")
        if await _schema_exists(conn, schema):
            if not await _has_migrations_table(conn, schema) and await _relation_count(conn, schema) > 0:
                raise DatamartError(
                    f"schema {schema!r} exists and is not a stream-logger datamart; choose another name "
                    "(or --drop-existing to delete everything in it)"
                )
        else:
            await conn.execute(f"CREATE SCHEMA {q_schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q_schema}.schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await _current_version(conn, schema)
        if current > len(migrations):
            raise DatamartError(
                f"datamart {schema!r} is at version {current}, newer than this stream-logger ({len(migrations)}); "
                "upgrade stream-logger"
            )
        # Migration files use unqualified names; SET LOCAL ends with this transaction.
        await conn.execute(f"SET LOCAL search_path TO {q_schema}")
        for migration in migrations[current:target]:
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {q_schema}.schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
        return max(current, target)


async def require_datamart(conn: asyncpg.Connection, schema: str) -> int:
    """Return the datamart's version; raise DatamartNotFound when ``schema`` is missing or not a datamart, and
    DatamartError when it needs ``datamart setup`` to upgrade it."""
    validate_schema_name(schema)
    if not await _has_migrations_table(conn, schema):
        raise DatamartNotFound(
            f"no datamart in schema {schema!r}: run 'stream-logger datamart setup --schema {schema}' first"
        )
    version = await _current_version(conn, schema)
    latest = latest_version()
    if version < latest:
        raise DatamartError(
            f"datamart {schema!r} is at version {version}, this stream-logger needs {latest}: "
            f"run 'stream-logger datamart setup --schema {schema}' to upgrade it"
        )
    return version


async def info(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """A summary of the datamart: version, row counts per subscription, dead letters and stored offsets.

    ``{"schema", "version", "payload_rows", "dead_letters", "subscriptions": [{"subscription_id", "table",
    "rows", "fields"}], "offsets": [{"group", "topic", "partition", "next_offset"}]}``. Row counts are exact.
    """
    version = await require_datamart(conn, schema)
    q_schema = quote_ident(schema)
    subscriptions: list[dict[str, Any]] = []
    # One snapshot for all counts; inside a caller's transaction, that transaction's snapshot rules.
    snapshot = (
        contextlib.nullcontext()
        if conn.is_in_transaction()
        else conn.transaction(isolation="repeatable_read", readonly=True)
    )
    async with snapshot:
        for row in await conn.fetch(
            f"SELECT subscription_id, table_name, jsonb_array_length(fields) AS n_fields "
            f"FROM {q_schema}.subscriptions ORDER BY subscription_id"
        ):
            table = f"{q_schema}.{quote_ident(row['table_name'])}"
            rows = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            subscriptions.append(
                {
                    "subscription_id": row["subscription_id"],
                    "table": row["table_name"],
                    "rows": rows,
                    "fields": row["n_fields"],
                }
            )
        dead_letters = int(await conn.fetchval(f"SELECT count(*) FROM {q_schema}.dead_letters"))
        offsets = [
            {"group": r["group_id"], "topic": r["topic"], "partition": r["partition"], "next_offset": r["next_offset"]}
            for r in await conn.fetch(
                f'SELECT group_id, topic, "partition", next_offset FROM {q_schema}.consumer_offsets '
                'ORDER BY group_id, topic, "partition"'
            )
        ]
    return {
        "schema": schema,
        "version": version,
        "payload_rows": sum(s["rows"] for s in subscriptions),
        "dead_letters": dead_letters,
        "subscriptions": subscriptions,
        "offsets": offsets,
    }
