"""datamart.drop and setup(drop_existing=True) against the real PostgreSQL: a datamart of hundreds of partitions
goes in many short transactions, and nothing outside it changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.datamart import DEFAULT_RELATIONS_PER_TRANSACTION, contents, drop, setup
from stream_logger.errors import DatamartError, DatamartNotFound
from stream_logger.identifiers import quote_ident
from tests.support import drop_schema, partitioned_datamart, unique_name

pytestmark = pytest.mark.integration

# The server's default lock table: max_locks_per_transaction (64) x max_connections (100).
DEFAULT_LOCK_TABLE = 64 * 100


@pytest.fixture
async def neighbour(settings: Settings, pg: asyncpg.Connection) -> AsyncIterator[str]:
    """Another small datamart next to the test's, which a drop must leave alone."""
    name = unique_name("s")
    await partitioned_datamart(pg, name, subscriptions=1, days=3)
    yield name
    await drop_schema(settings, name)


async def _relations(pg: asyncpg.Connection, schema: str) -> set[int]:
    """The OIDs of the schema's relations and of their TOAST tables and indexes."""
    rows = await pg.fetch(
        "SELECT c.oid, c.reltoastrelid, i.indexrelid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indrelid = c.reltoastrelid WHERE n.nspname = $1",
        schema,
    )
    return {oid for r in rows for oid in (r["oid"], r["reltoastrelid"], r["indexrelid"]) if oid}


async def test_a_datamart_of_hundreds_of_partitions_goes_in_many_short_transactions(
    pg: asyncpg.Connection, schema: str, neighbour: str
) -> None:
    await partitioned_datamart(pg, schema, subscriptions=3, days=150)
    before = await contents(pg, schema)
    assert before is not None
    assert (before.subscriptions, before.tables, before.partitions) == (
        3,
        9,
        450,
    )  # the 6 fixed tables and 3 payload tables
    assert before.rows_estimate == 10
    ours = await _relations(pg, schema)
    assert len(ours) == before.relations
    theirs = await _relations(pg, neighbour)

    progress: list[tuple[int, int]] = []
    summary = await drop(pg, schema, relations_per_transaction=50, on_progress=lambda d, t: progress.append((d, t)))

    assert summary.existed and summary.relations_dropped == before.relations
    assert summary.transactions == len(progress) > before.relations // 50
    assert {t for _, t in progress} == {before.relations}
    done = [d for d, _ in progress]
    assert done == sorted(done) and done[-1] == before.relations
    # Every transaction but the last (DROP SCHEMA of what is left) stays within its budget.
    assert max(b - a for a, b in zip([0, *done[:-2]], done[:-1], strict=True)) <= 50
    assert not await pg.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema)
    assert not await pg.fetchval("SELECT count(*) FROM pg_class WHERE oid = ANY($1::oid[])", list(ours))
    assert await _relations(pg, neighbour) == theirs
    assert (
        await pg.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 0
    )

    again = await drop(pg, schema)
    assert (again.existed, again.relations_dropped, again.transactions) == (False, 0, 0)
    assert await contents(pg, schema) is None


async def test_an_interrupted_drop_is_finished_by_running_it_again(pg: asyncpg.Connection, schema: str) -> None:
    await partitioned_datamart(pg, schema, subscriptions=2, days=20)
    total = (await contents(pg, schema) or pytest.fail("no datamart")).relations

    def interrupt(dropped: int, _total: int) -> None:
        if dropped > 60:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await drop(pg, schema, relations_per_transaction=30, on_progress=interrupt)
    half = await contents(pg, schema)
    assert half is not None and 0 < half.relations < total
    assert (
        await pg.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 0
    )

    summary = await drop(pg, schema, relations_per_transaction=30)
    assert summary.existed and summary.relations_dropped == half.relations
    assert await contents(pg, schema) is None


async def test_a_schema_that_is_not_a_datamart_is_refused(pg: asyncpg.Connection, schema: str) -> None:
    q_schema = quote_ident(schema)
    await pg.execute(f"CREATE SCHEMA {q_schema}; CREATE TABLE {q_schema}.precious (x int)")
    with pytest.raises(DatamartNotFound, match=r"not a stream-logger datamart.*nothing was dropped"):
        await drop(pg, schema)
    with pytest.raises(DatamartNotFound, match="not a stream-logger datamart"):
        await contents(pg, schema)
    assert await pg.fetchval("SELECT to_regclass($1)", f"{q_schema}.precious") is not None
    # Another tool's schema_migrations (Rails: a text version only) does not make it a datamart.
    await pg.execute(f"CREATE TABLE {q_schema}.schema_migrations (version text PRIMARY KEY)")
    with pytest.raises(DatamartNotFound, match="not a stream-logger datamart"):
        await drop(pg, schema)
    assert await pg.fetchval("SELECT to_regclass($1)", f"{q_schema}.precious") is not None


async def test_drop_refuses_a_transaction_and_a_budget_below_one(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    async with pg.transaction():
        with pytest.raises(DatamartError, match="outside a transaction"):
            await drop(pg, schema)
        with pytest.raises(DatamartError, match="outside a transaction"):
            await setup(pg, schema, drop_existing=True)
    with pytest.raises(DatamartError, match="at least 1"):
        await drop(pg, schema, relations_per_transaction=0)
    assert await contents(pg, schema) is not None


async def test_setup_drop_existing_recreates_a_partitioned_datamart(pg: asyncpg.Connection, schema: str) -> None:
    await partitioned_datamart(pg, schema, subscriptions=2, days=30)
    await setup(pg, schema, drop_existing=True)
    after = await contents(pg, schema)
    assert after is not None
    assert (after.subscriptions, after.tables, after.partitions, after.rows_estimate) == (
        0,
        6,
        0,
        0,
    )  # the fixed tables


async def test_one_chunk_of_the_default_size_takes_a_small_share_of_the_lock_table(
    pg: asyncpg.Connection, schema: str
) -> None:
    """The chunk math: a day partition is 5 relations and takes under 2 locks a relation, so the default chunk
    stays well under the server's default lock table (this drops partitions by hand, then rolls back)."""
    await partitioned_datamart(pg, schema, subscriptions=1, days=40)
    partitions = [
        r[0]
        for r in await pg.fetch(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = to_regclass($1)",
            f"{quote_ident(schema)}.payload_m0",
        )
    ]
    relations_per_partition = 5  # the table, its two indexes, its TOAST table and TOAST index
    chunk = partitions[: DEFAULT_RELATIONS_PER_TRANSACTION // relations_per_partition]
    tr = pg.transaction()
    await tr.start()
    try:
        await pg.execute(f"DROP TABLE {', '.join(chunk)}")
        locks = await pg.fetchval("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()")
    finally:
        await tr.rollback()
    assert locks < 2 * DEFAULT_RELATIONS_PER_TRANSACTION + 10
    assert locks < DEFAULT_LOCK_TABLE / 10
