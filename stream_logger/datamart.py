"""The datamart: one PostgreSQL schema holding the payload tables, subscriptions, dead letters and offsets.

:func:`setup` creates or upgrades a datamart by applying versioned SQL migrations in order. The migrations'
canonical home is ``schemas/datamart/NNNN_name.sql`` at the top of the repository; an identical copy ships inside
the package as ``stream_logger/_schemas/datamart/`` (package data, read with :mod:`importlib.resources`, so an
installed wheel needs no checkout). A unit test fails when the two differ. Each applied migration is recorded in
the schema's own ``schema_migrations`` table; migrations run in one transaction under an advisory lock, so
concurrent ``setup`` calls are safe and a failed upgrade leaves the datamart as it was.

The per-subscription payload tables are created by :mod:`stream_logger.registry`, not by migrations.

:func:`drop` removes a datamart of any size in many short transactions: one ``DROP SCHEMA ... CASCADE`` locks every
table, partition, index and TOAST table in one transaction, and a datamart with thousands of day partitions
overflows PostgreSQL's shared lock table (``max_locks_per_transaction``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import asyncpg

from .config import redact_dsn
from .errors import DatabaseUnavailable, DatamartError, DatamartNotFound, FatalError
from .identifiers import quote_ident, validate_schema_name

__all__ = [
    "DEFAULT_RELATIONS_PER_TRANSACTION",
    "MIGRATIONS_PACKAGE_DIR",
    "DatamartContents",
    "DropSummary",
    "Migration",
    "advisory_key",
    "chunk_length",
    "connect",
    "contents",
    "drop",
    "info",
    "latest_version",
    "load_migrations",
    "refuse_in_transaction",
    "require_datamart",
    "setup",
]

MIGRATIONS_PACKAGE_DIR: Final = ("_schemas", "datamart")
"""Where the migrations live inside the package (a copy of ``schemas/datamart/``)."""

DEFAULT_RELATIONS_PER_TRANSACTION: Final = 200
"""How many relations :func:`drop` removes in one transaction. Dropping a relation also locks its row types and
constraints: a day partition (table, two indexes, TOAST table and its index: 5 relations) takes 9 locks on
PostgreSQL 15, so 200 relations take about 360 of the 6,400 the default lock table holds (64 a connection, 100
connections), shared by every session of the server."""

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@contextlib.asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """An open connection to the datamart's database, closed afterwards; a failure to connect is a
    :class:`FatalError` (credentials refused) or :class:`DatabaseUnavailable`, with the DSN's password hidden."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise FatalError(f"PostgreSQL at {redact_dsn(dsn)} refused the credentials: {exc}") from exc
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {exc}") from exc
    try:
        yield conn
    finally:
        await conn.close()


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


# The relations of a schema: its pg_class rows, plus the TOAST table and TOAST index of each that has one (those
# live in pg_toast, and are dropped and locked with their table).
_IN_SCHEMA = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1"
_RELATIONS = "count(*) + 2 * count(*) FILTER (WHERE c.reltoastrelid <> 0)"


async def _relation_count(conn: asyncpg.Connection, schema: str) -> int:
    return int(await conn.fetchval(f"SELECT {_RELATIONS} {_IN_SCHEMA}", schema))


async def _has_migrations_table(conn: asyncpg.Connection, schema: str) -> bool:
    return await conn.fetchval("SELECT to_regclass($1)", f"{quote_ident(schema)}.schema_migrations") is not None


async def _current_version(conn: asyncpg.Connection, schema: str) -> int:
    value = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {quote_ident(schema)}.schema_migrations")
    return int(value)


def refuse_in_transaction(conn: asyncpg.Connection, what: str) -> None:
    """Raise DatamartError when ``conn`` is inside a transaction: ``what`` runs its own short transactions."""
    if conn.is_in_transaction():
        raise DatamartError(f"{what} runs DDL in its own short transactions: call it outside a transaction")


async def setup(conn: asyncpg.Connection, schema: str, *, drop_existing: bool = False, up_to: int | None = None) -> int:
    """Create the datamart ``schema``, or upgrade it to the latest version; returns the version it is now at.

    Idempotent. ``drop_existing`` drops the whole schema first (everything in it is lost), in many short
    transactions as :func:`drop` does, so it must be called outside a transaction. A schema that exists and holds
    anything but is not a datamart is refused rather than written into. ``up_to`` stops at that migration version
    (for tests of upgrades).
    """
    validate_schema_name(schema)
    migrations = load_migrations()
    target = len(migrations) if up_to is None else up_to
    if not 0 <= target <= len(migrations):
        raise DatamartError(f"unknown datamart version {target}: this stream-logger knows 1..{len(migrations)}")
    if not drop_existing:
        return await _migrate(conn, schema, migrations, target)
    refuse_in_transaction(conn, "setup(drop_existing=True)")
    async with _schema_lock(conn, schema):
        await _drop_locked(conn, schema, DEFAULT_RELATIONS_PER_TRANSACTION, None)
        return await _migrate(conn, schema, migrations, target)


async def _migrate(conn: asyncpg.Connection, schema: str, migrations: Sequence[Migration], target: int) -> int:
    """Create the schema if needed and apply the migrations up to ``target`` it lacks, in one transaction."""
    q_schema = quote_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _schema_lock_key(schema))
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


def _schema_lock_key(schema: str) -> int:
    # setup and drop share the key, so neither runs while the other is half done.
    return advisory_key(schema, "setup")


@contextlib.asynccontextmanager
async def _schema_lock(conn: asyncpg.Connection, schema: str) -> AsyncIterator[None]:
    """The setup/drop lock held by the session, across transactions (re-entrant: setup's xact lock passes)."""
    key = _schema_lock_key(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        yield
    except BaseException:
        # The session may be unusable now (lost, or its query cancelled); closing it releases the lock too.
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
        raise
    await conn.execute("SELECT pg_advisory_unlock($1)", key)


@dataclass(frozen=True, slots=True)
class DatamartContents:
    """What :func:`drop` would remove, from the catalog. ``relations`` counts tables, partitions, indexes,
    sequences and TOAST tables; ``rows_estimate`` is PostgreSQL's estimate (``pg_class.reltuples``) as of the
    last ANALYZE, 0 for tables never analyzed."""

    schema: str
    subscriptions: int
    tables: int
    partitions: int
    relations: int
    rows_estimate: int


@dataclass(frozen=True, slots=True)
class DropSummary:
    """What :func:`drop` did. ``existed`` is False when there was no such schema (nothing was done)."""

    schema: str
    existed: bool
    relations_dropped: int
    transactions: int


async def _require_datamart_schema(conn: asyncpg.Connection, schema: str) -> bool:
    """Whether ``schema`` exists; raise DatamartNotFound when it exists but is not a datamart."""
    if not await _schema_exists(conn, schema):
        return False
    # Other migration tools (Rails, golang-migrate) name their table schema_migrations too: check its columns.
    columns = await conn.fetchval(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) "
        "AND attname IN ('version', 'name', 'applied_at') AND NOT attisdropped",
        f"{quote_ident(schema)}.schema_migrations",
    )
    if columns != 3:
        raise DatamartNotFound(
            f"schema {schema!r} exists but is not a stream-logger datamart (it has no stream-logger "
            "schema_migrations table); nothing was dropped"
        )
    return True


async def contents(conn: asyncpg.Connection, schema: str) -> DatamartContents | None:
    """What the datamart ``schema`` holds (see :class:`DatamartContents`); None when there is no such schema.

    Raises DatamartNotFound when the schema exists but is not a datamart.
    """
    validate_schema_name(schema)
    if not await _require_datamart_schema(conn, schema):
        return None
    counts = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition) AS tables, "
        "count(*) FILTER (WHERE c.relkind IN ('r', 'p') AND c.relispartition) AS partitions, "
        f"{_RELATIONS} AS relations, "
        "coalesce(sum(greatest(c.reltuples, 0)) FILTER (WHERE c.relkind = 'r'), 0)::bigint AS rows_estimate "
        f"{_IN_SCHEMA}",
        schema,
    )
    registry = f"{quote_ident(schema)}.subscriptions"
    subscriptions = 0
    if await conn.fetchval("SELECT to_regclass($1)", registry) is not None:  # gone in a half-done drop
        subscriptions = int(await conn.fetchval(f"SELECT count(*) FROM {registry}"))
    return DatamartContents(
        schema=schema,
        subscriptions=subscriptions,
        tables=int(counts["tables"]),
        partitions=int(counts["partitions"]),
        relations=int(counts["relations"]),
        rows_estimate=int(counts["rows_estimate"]),
    )


def chunk_length(relations: Sequence[int], budget: int) -> int:
    """How many of the leading tables, each bringing ``relations[i]`` relations, one transaction drops without
    passing ``budget`` relations; at least one, so a table larger than the budget is dropped alone."""
    total = 0
    for i, n in enumerate(relations):
        total += n
        if total > budget:
            return max(i, 1)
    return len(relations)


# Tables that nothing in the schema inherits from, partitions first: partitions go before their parents, and a
# parent goes once its partitions are gone. A table's relations: itself, its indexes, its TOAST table and index.
# schema_migrations stays until DROP SCHEMA, so an interrupted drop still finds a datamart to finish.
_DROPPABLE_TABLES = (
    "SELECT c.relname, 1 + (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) "
    "+ CASE WHEN c.reltoastrelid <> 0 THEN 2 ELSE 0 END AS relations "
    f"{_IN_SCHEMA} AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations' "
    "AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = c.oid) "
    "ORDER BY c.relispartition DESC, c.relname LIMIT $2"
)


async def drop(
    conn: asyncpg.Connection,
    schema: str,
    *,
    relations_per_transaction: int = DEFAULT_RELATIONS_PER_TRANSACTION,
    on_progress: Callable[[int, int], None] | None = None,
) -> DropSummary:
    """Drop the datamart ``schema`` and everything in it, in many short transactions; call outside a transaction.

    Day partitions go first, a chunk of at most ``relations_per_transaction`` relations a transaction, then the
    payload and fixed tables, then the schema itself: no transaction needs more than a few hundred locks, whatever
    the datamart's size. ``on_progress(dropped, total)`` is called after each transaction, in relations. Each step
    re-reads the catalog, so an interrupted drop can be run again to finish. A missing schema is a no-op
    (``existed=False``); a schema that is not a datamart raises DatamartNotFound. Stop the workers first: a
    worker that writes meanwhile creates partitions again (and a drop waits for their locks).
    """
    validate_schema_name(schema)
    if relations_per_transaction < 1:
        raise DatamartError(f"relations per transaction must be at least 1, not {relations_per_transaction}")
    refuse_in_transaction(conn, "datamart drop")
    async with _schema_lock(conn, schema):
        if not await _require_datamart_schema(conn, schema):
            return DropSummary(schema, existed=False, relations_dropped=0, transactions=0)
        return await _drop_locked(conn, schema, relations_per_transaction, on_progress)


async def _drop_locked(
    conn: asyncpg.Connection,
    schema: str,
    relations_per_transaction: int,
    on_progress: Callable[[int, int], None] | None,
) -> DropSummary:
    """Drop ``schema`` (any schema, datamart or not) in chunks. Caller holds the schema lock."""
    if not await _schema_exists(conn, schema):
        return DropSummary(schema, existed=False, relations_dropped=0, transactions=0)
    q_schema = quote_ident(schema)
    total = await _relation_count(conn, schema)
    transactions = 0
    while rows := await conn.fetch(_DROPPABLE_TABLES, schema, relations_per_transaction):
        chunk = rows[: chunk_length([r["relations"] for r in rows], relations_per_transaction)]
        tables = ", ".join(f"{q_schema}.{quote_ident(r['relname'])}" for r in chunk)
        # CASCADE: what depends on these tables (a view, a foreign key) would go with DROP SCHEMA CASCADE too.
        async with conn.transaction():
            await conn.execute(f"DROP TABLE IF EXISTS {tables} CASCADE")
        transactions += 1
        if on_progress is not None:
            on_progress(max(total - await _relation_count(conn, schema), 0), total)
    # What is left is small: schema_migrations, sequences, views, types, functions.
    async with conn.transaction():
        await conn.execute(f"DROP SCHEMA IF EXISTS {q_schema} CASCADE")
    transactions += 1
    if on_progress is not None:
        on_progress(total, total)
    return DropSummary(schema, existed=True, relations_dropped=total, transactions=transactions)


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
