"""Hostile names against the real worker and database: a message may carry any subscription id, field name or
timestamp, and none may stop the worker, divert another subscription's rows or grow the catalog without bound."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from tests.support import (
    DAY,
    config,
    dead_letters,
    produce_in_order,
    record,
    run_until_caught_up,
    sub_record,
    tables_of,
)

pytestmark = pytest.mark.integration


async def rows_of(pg: asyncpg.Connection, schema: str, table: str) -> int:
    n: int = await pg.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}")
    return n


@pytest.mark.parametrize("squatter", ["credit_pkey", "credit_ts_idx", "Credit-PKEY"])
async def test_a_subscription_named_like_another_tables_index_takes_nothing_from_it(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, squatter: str
) -> None:
    recs = [sub_record(0, squatter), sub_record(1, "credit"), sub_record(2, "credit"), sub_record(3, squatter)]
    await produce_in_order(settings, topic, recs)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.rows == 4 and summary.dead_lettered == 0
    tables = await tables_of(pg, datamart_schema)
    assert set(tables) == {squatter, "credit"}
    assert await rows_of(pg, datamart_schema, tables["credit"]) == 2
    assert await rows_of(pg, datamart_schema, tables[squatter]) == 2


async def test_a_subscription_named_like_another_tables_partition_diverts_nothing(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    squatter = f"credit_p{DAY:%Y%m%d}"
    recs = [sub_record(0, squatter), *(sub_record(i, "credit") for i in range(1, 6))]
    await produce_in_order(settings, topic, recs)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.dead_letters == {} and summary.rows == 6
    tables = await tables_of(pg, datamart_schema)
    assert await rows_of(pg, datamart_schema, tables["credit"]) == 5
    # the day's partition of credit's table really is a partition of it, and holds its rows
    parent = f"{quote_ident(datamart_schema)}.{quote_ident(tables['credit'])}"
    held = await pg.fetchval(
        f"SELECT count(*) FROM {parent} p JOIN pg_inherits i ON i.inhrelid = p.tableoid "
        f"WHERE i.inhparent = '{parent}'::regclass"
    )
    assert held == 5


NUL_CASES: dict[str, Callable[[dict[str, Any]], object]] = {
    "subscription_id": lambda r: r.update(subscription_id="cre\x00dit"),
    "deployment_id of a new subscription": lambda r: r.update(subscription_id="fresh", deployment_id="d\x00"),
    "asset_revision of a new subscription": lambda r: r.update(subscription_id="fresh", asset_revision="r\x00"),
    "a request field of a new subscription": lambda r: (
        r.update(subscription_id="fresh"),
        r["request"]["fields"].__setitem__(0, "Check\x00ing"),
    ),
    "a response field": lambda r: r["response"]["fields"].__setitem__(0, "predic\x00tion"),
    "a new request field of a known subscription": lambda r: (
        r["request"]["fields"].append("New\x00Field"),
        r["request"]["values"][0].append(1),
    ),
    "a meta field": lambda r: r["request"].update(meta={"fields": ["Cust\x00omer"], "values": [["c1"]]}),
}


@pytest.mark.parametrize("where", list(NUL_CASES))
async def test_a_nul_in_a_name_is_dead_lettered_and_the_stream_goes_on(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, where: str
) -> None:
    hostile = record(100)
    NUL_CASES[where](hostile)
    recs = [record(0), hostile, record(1), record(2)]
    await produce_in_order(settings, topic, recs)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.rows == 3
    letters = await dead_letters(pg, datamart_schema)
    assert [code for code, _ in letters] == ["invalid_record"]
    assert "NUL" in letters[0][1]
    assert set(await tables_of(pg, datamart_schema)) == {"credit_model"}


async def test_look_alike_subscription_ids_are_one_subscription_or_refused(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    hostile = ["caf\u200be", "\u202ecafe", "cafe\ufeff", "caf\u00ade"]
    recs = [sub_record(0, nfc), sub_record(1, nfd), *(sub_record(2 + i, s) for i, s in enumerate(hostile))]
    await produce_in_order(settings, topic, recs)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.rows == 2
    assert await tables_of(pg, datamart_schema) == {nfc: "payload_cafe"}
    letters = await dead_letters(pg, datamart_schema)
    assert [code for code, _ in letters] == ["invalid_record"] * len(hostile)
    assert all("subscription_id" in detail for _, detail in letters)


async def test_auto_registration_stops_at_the_limit_and_costs_only_the_records_over_it(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    recs = [sub_record(i, f"model_{i % 5}") for i in range(20)]  # five subscriptions, four records each
    await produce_in_order(settings, topic, recs)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema, max_subscriptions=3))
    assert summary.rows == 12
    assert summary.dead_letters == {"subscription_limit": 8}
    assert set(await tables_of(pg, datamart_schema)) == {"model_0", "model_1", "model_2"}
    letters = await dead_letters(pg, datamart_schema)
    assert "3" in letters[0][1] and "max-subscriptions" in letters[0][1]
    # At the limit, later batches refuse new ids in bulk and still store the known ones.
    await produce_in_order(settings, topic, [sub_record(100 + i, f"model_{i % 6}") for i in range(12)])
    summary = await run_until_caught_up(settings, config(topic, datamart_schema, max_subscriptions=3))
    assert summary.rows == 6 and summary.dead_letters == {"subscription_limit": 6}


async def test_records_outside_the_timestamp_window_are_dead_lettered(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    recs = [
        sub_record(0, "credit", now),
        sub_record(1, "credit", now - timedelta(days=3)),
        sub_record(2, "credit", now - timedelta(days=40)),
        sub_record(3, "credit", now + timedelta(hours=30)),
        sub_record(4, "credit", datetime(1970, 1, 1, tzinfo=UTC)),
        sub_record(5, "credit", datetime(9999, 12, 30, tzinfo=UTC)),
    ]
    await produce_in_order(settings, topic, recs)
    cfg = config(topic, datamart_schema, max_record_age_s=7 * 86400.0, max_record_lead_s=86400.0)
    summary = await run_until_caught_up(settings, cfg)
    assert summary.rows == 2
    assert summary.dead_letters == {"timestamp_out_of_window": 4}
    partitions = await pg.fetchval(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        datamart_schema,
    )
    assert partitions <= 2
