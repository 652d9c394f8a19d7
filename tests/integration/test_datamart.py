"""datamart setup / info / require_datamart against the real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from stream_logger.datamart import info, latest_version, require_datamart, setup
from stream_logger.errors import DatamartError, DatamartNotFound, IdentifierError

pytestmark = pytest.mark.integration


async def _tables(pg: asyncpg.Connection, schema: str) -> set[str]:
    rows = await pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    return {r[0] for r in rows}


async def test_setup_creates_the_datamart_and_is_idempotent(pg: asyncpg.Connection, schema: str) -> None:
    assert await setup(pg, schema) == latest_version()
    expected = {"schema_migrations", "dead_letters", "consumer_offsets", "subscriptions", "monitors", "measurements"}
    assert await _tables(pg, schema) == expected
    await pg.execute(
        f'INSERT INTO "{schema}".consumer_offsets (group_id, topic, "partition", next_offset) VALUES ($1, $2, $3, $4)',
        "g",
        "t",
        0,
        7,
    )
    assert await setup(pg, schema) == latest_version()
    assert await _tables(pg, schema) == expected
    migrations = await pg.fetch(f'SELECT version FROM "{schema}".schema_migrations ORDER BY version')
    assert [r[0] for r in migrations] == list(range(1, latest_version() + 1))
    assert (await info(pg, schema))["offsets"] == [{"group": "g", "topic": "t", "partition": 0, "next_offset": 7}]


async def test_upgrade_from_version_one(pg: asyncpg.Connection, schema: str) -> None:
    assert await setup(pg, schema, up_to=1) == 1
    with pytest.raises(DatamartError, match="upgrade"):
        await require_datamart(pg, schema)
    await pg.execute(
        f"INSERT INTO \"{schema}\".subscriptions (subscription_id, table_name, auto_registered) VALUES ('a', 'b', true)"
    )
    assert await setup(pg, schema) == latest_version()
    assert await require_datamart(pg, schema) == latest_version()
    # 0002 added the evolve switch; the existing row got its default.
    assert await pg.fetchval(f'SELECT evolve FROM "{schema}".subscriptions') is True
    indexes = await pg.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)
    assert "dead_letters_failed_at_idx" in {r[0] for r in indexes}


async def test_drop_existing_starts_afresh(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    await pg.execute(
        f'INSERT INTO "{schema}".dead_letters (topic, "partition", "offset", error_code, detail) '
        "VALUES ('t', 0, 1, 'malformed_json', 'x')"
    )
    assert (await info(pg, schema))["dead_letters"] == 1
    await setup(pg, schema, drop_existing=True)
    assert (await info(pg, schema))["dead_letters"] == 0


async def test_a_schema_that_is_not_a_datamart_is_refused(pg: asyncpg.Connection, schema: str) -> None:
    await pg.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".precious (x int)')
    with pytest.raises(DatamartError, match="not a stream-logger datamart"):
        await setup(pg, schema)
    assert await _tables(pg, schema) == {"precious"}
    with pytest.raises(DatamartNotFound):
        await require_datamart(pg, schema)


async def test_info_on_a_missing_datamart(pg: asyncpg.Connection, schema: str) -> None:
    with pytest.raises(DatamartNotFound, match="datamart setup"):
        await info(pg, schema)


async def test_injection_in_a_schema_name_leaves_the_database_untouched(pg: asyncpg.Connection) -> None:
    # Other developers share this server, so count only what these names could have touched.
    public_tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    suspicious = "SELECT count(*) FROM pg_namespace WHERE nspname ILIKE '%drop%' OR nspname <> lower(nspname)"
    before = (await pg.fetchval(public_tables), await pg.fetchval(suspicious))
    for hostile in ['x"; DROP SCHEMA public CASCADE; --', "public; DROP TABLE x", "Public", "pg_catalog"]:
        with pytest.raises(IdentifierError):
            await setup(pg, hostile)
        with pytest.raises(IdentifierError):
            await info(pg, hostile)
    assert await pg.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')")
    assert (await pg.fetchval(public_tables), await pg.fetchval(suspicious)) == before
