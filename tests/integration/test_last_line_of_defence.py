"""The last line of defence: an unexpected error on one message (a bug here, a statement PostgreSQL refuses) costs
that message, dead-lettered as ``internal_error`` with the exception named, and never its partition.

The bugs are planted in this package's own functions (never in Kafka or PostgreSQL, which stay real)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from stream_logger import contract, feedback, registry, sink
from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from tests.support import DAY, config, dead_letters, produce_in_order, run_until_caught_up, sub_record, tables_of

pytestmark = pytest.mark.integration


async def test_a_bug_while_decoding_one_message_dead_letters_it_and_its_neighbours_land(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_decode = feedback.decode_message

    def buggy_decode(value: bytes | None, max_bytes: int = contract.DEFAULT_MAX_RECORD_BYTES) -> Any:
        if value and b"s-13" in value:
            raise ZeroDivisionError("planted " + "x" * 10_000)
        return real_decode(value, max_bytes)

    monkeypatch.setattr(sink, "decode_message", buggy_decode)
    await produce_in_order(settings, topic, [sub_record(i, "credit") for i in range(10, 20)])
    summary = await run_until_caught_up(settings, config(topic, datamart_schema, batch_max_records=3))
    assert summary.rows == 9
    assert summary.dead_letters == {"internal_error": 1}
    [(code, detail)] = await dead_letters(pg, datamart_schema)
    assert code == "internal_error" and "ZeroDivisionError: planted" in detail
    assert len(detail) < 1000  # a hostile message is cut short


async def test_a_bug_while_registering_one_subscription_costs_only_its_records(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_create = registry.create_subscription

    async def buggy_create(conn: asyncpg.Connection, schema: str, subscription_id: str, *a: Any, **kw: Any) -> Any:
        if subscription_id == "explodes":
            await conn.execute("SELECT * FROM no_such_table_here")  # a statement PostgreSQL refuses
        return await real_create(conn, schema, subscription_id, *a, **kw)

    monkeypatch.setattr(registry, "create_subscription", buggy_create)
    recs = [sub_record(0, "credit"), sub_record(1, "explodes"), sub_record(2, "credit"), sub_record(3, "explodes")]
    await produce_in_order(settings, topic, recs)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.rows == 2
    assert summary.dead_letters == {"internal_error": 2}
    assert set(await tables_of(pg, datamart_schema)) == {"credit"}
    assert all("UndefinedTableError" in detail for _, detail in await dead_letters(pg, datamart_schema))


async def test_a_partition_name_held_by_a_stranger_is_an_error_for_that_day_only(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_in_order(settings, topic, [sub_record(0, "credit", DAY.replace(month=10))])
    await run_until_caught_up(settings, config(topic, datamart_schema))
    table = (await tables_of(pg, datamart_schema))["credit"]
    # as a table made by hand, or by an older stream-logger for a subscription called credit_p20251129, would
    await pg.execute(f"CREATE TABLE {quote_ident(datamart_schema)}.{quote_ident(f'{table}_p{DAY:%Y%m%d}')} (x int)")
    recs = [sub_record(1, "credit"), sub_record(2, "credit", DAY.replace(month=10)), sub_record(3, "other")]
    await produce_in_order(settings, topic, recs)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.rows == 2  # October's record and the other subscription's
    assert summary.dead_letters == {"internal_error": 1}
    [(_, detail)] = await dead_letters(pg, datamart_schema)
    assert f"{table}_p{DAY:%Y%m%d}" in detail and "not a partition" in detail
