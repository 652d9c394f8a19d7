"""Subscriptions against the real PostgreSQL: auto-registration, evolution, conflicts, hostile names, concurrency,
and rows written through COPY with the columns and tuples rows_for gives."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.contract import ScoringRecord, Table
from stream_logger.datamart import info, setup
from stream_logger.errors import RecordError, SubscriptionError
from stream_logger.registry import Registry, declare, list_subscriptions, partition_days
from stream_logger.rows import rows_for
from stream_logger.subscription import Source, Subscription
from tests.support import GERMAN_CREDIT_FIELDS, german_credit_record, simple_record

pytestmark = pytest.mark.integration

NOW = datetime(2024, 5, 18, tzinfo=UTC)


async def _columns(pg: asyncpg.Connection, schema: str, table: str) -> dict[str, str]:
    rows = await pg.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
        schema,
        table,
    )
    return {r[0]: r[1] for r in rows}


async def _write(pg: asyncpg.Connection, registry: Registry, records: list[ScoringRecord]) -> dict[str, Any]:
    """What the sink does, minimally: prepare, partitions, rows_for, COPY."""
    subs = await registry.prepare(pg, records)
    for i, record in enumerate(records):
        sub = subs[record.subscription_id]
        assert isinstance(sub, Subscription)
        await registry.ensure_partitions(pg, sub, partition_days([record]))
        rows = rows_for(sub, record, Source("t", 0, i), NOW)
        await pg.copy_records_to_table(sub.table, schema_name=sub.schema, columns=list(sub.columns), records=rows)
    return subs


async def test_auto_registration_then_info_with_data(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    registry = Registry(schema)
    day1 = datetime(2024, 5, 17, 23, 59, tzinfo=UTC)
    records = [
        german_credit_record("a", rows=3, timestamp=day1),
        german_credit_record("b", rows=1, timestamp=day1 + timedelta(minutes=2)),  # next UTC day
    ]
    subs = await _write(pg, registry, records)
    sub = subs["german_credit"]
    assert isinstance(sub, Subscription)
    assert sub.table == "payload_german_credit"
    columns = await _columns(pg, schema, sub.table)
    assert columns["age"] == "bigint"
    assert columns["checking_status"] == "text"
    assert columns["prediction"] == "text"
    assert columns["probability"] == "ARRAY"
    roles = {f.name: f.role for f in sub.fields}
    assert roles["Age"] == "feature" and roles["prediction"] == "prediction" and roles["probability"] == "probability"
    assert len(sub.fields) == len(GERMAN_CREDIT_FIELDS) + 2
    rows = await pg.fetch(
        "SELECT scoring_id, row_index, age, probability, tableoid::regclass::text AS part "
        f'FROM "{schema}"."{sub.table}" ORDER BY scoring_id, row_index'
    )
    assert [(r["scoring_id"], r["row_index"]) for r in rows] == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert rows[0]["age"] == 19 and rows[0]["probability"] == [0.3, 0.7]
    assert {r["part"].split(".")[-1] for r in rows} == {
        "payload_german_credit_p20240517",
        "payload_german_credit_p20240518",
    }
    summary = await info(pg, schema)
    assert summary["payload_rows"] == 4
    assert summary["subscriptions"] == [
        {"subscription_id": "german_credit", "table": sub.table, "rows": 4, "fields": len(sub.fields)}
    ]
    # a re-delivered record conflicts with the key
    with pytest.raises(asyncpg.UniqueViolationError):
        await _write(pg, registry, records[:1])
    # a fresh registry (another worker) loads the same subscription
    again = (await Registry(schema).prepare(pg, records))["german_credit"]
    assert isinstance(again, Subscription) and again.columns == sub.columns


async def test_additive_evolution_and_nulls_in_old_rows(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    registry = Registry(schema)
    await _write(pg, registry, [simple_record("1", ["a", "later"], [[1, None]])])
    sub = registry.cached("simple")
    assert sub is not None and [f.name for f in sub.fields] == ["a"]  # null everywhere: no column yet
    await _write(pg, registry, [simple_record("2", ["a", "later", "Later"], [[2, 2.5, "x"]])])
    sub = registry.cached("simple")
    assert sub is not None
    assert [(f.name, f.column, f.type) for f in sub.fields] == [
        ("a", "a", "bigint"),
        ("later", "later", "float8"),
        ("Later", "later_2", "text"),
    ]
    rows = await pg.fetch(f'SELECT scoring_id, a, later, later_2, extra FROM "{schema}".payload_simple ORDER BY 1')
    assert [tuple(r) for r in rows] == [("1", 1, None, None, '{"request": {"later": null}}'), ("2", 2, 2.5, "x", None)]
    stored = await list_subscriptions(pg, schema)
    assert [f.column for f in stored[0].fields] == ["a", "later", "later_2"]


async def test_evolve_false_keeps_new_fields_in_extra(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    await declare(
        pg, schema, {"subscription_id": "fixed", "evolve": False, "fields": [{"name": "a", "type": "integer"}]}
    )
    registry = Registry(schema)
    await _write(pg, registry, [simple_record("1", ["a", "b"], [[1, "new"]], subscription_id="fixed")])
    assert "b" not in await _columns(pg, schema, "payload_fixed")
    assert await pg.fetchval(f'SELECT extra FROM "{schema}".payload_fixed') == '{"request": {"b": "new"}}'


async def test_type_conflict_writes_nothing(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    registry = Registry(schema)
    await _write(pg, registry, [simple_record("1", ["n"], [[1]])])
    bad = simple_record("2", ["n"], [[3], ["three"]])
    sub = (await registry.prepare(pg, [bad]))["simple"]
    assert isinstance(sub, Subscription)
    with pytest.raises(RecordError) as caught:
        rows_for(sub, bad, Source("t", 0, 9), NOW)
    assert (caught.value.code, caught.value.path) == ("type_conflict", "request.values[1][n]")
    assert await pg.fetchval(f'SELECT count(*) FROM "{schema}".payload_simple') == 1
    assert (await _columns(pg, schema, "payload_simple"))["n"] == "bigint"


async def test_unknown_subscription_without_auto_registration(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    out = await Registry(schema, auto_register=False).prepare(pg, [simple_record("1", ["a"], [[1]])])
    error = out["simple"]
    assert isinstance(error, RecordError) and error.code == "unknown_subscription"
    assert await list_subscriptions(pg, schema) == []


async def test_hostile_subscription_id_and_field_names_leave_the_database_untouched(
    pg: asyncpg.Connection, schema: str
) -> None:
    await setup(pg, schema)
    count_schemas = "SELECT count(*) FROM pg_namespace WHERE nspname IN ('public', $1)"
    public_tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    before = (await pg.fetchval(count_schemas, schema), await pg.fetchval(public_tables))
    hostile = 'x"; DROP SCHEMA public CASCADE; --'
    fields = [hostile, "a'); DROP TABLE subscriptions; --", "select", "scoring_id", "Age", "age", "x" * 200]
    record = simple_record("1", fields, [[1, 2, 3, 4, 5, 6, 7]], subscription_id=hostile)
    registry = Registry(schema)
    await _write(pg, registry, [record])
    assert (await pg.fetchval(count_schemas, schema), await pg.fetchval(public_tables)) == before
    tables = {r[0] for r in await pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)}
    assert tables == {
        "schema_migrations",
        "dead_letters",
        "consumer_offsets",
        "subscriptions",
        "monitors",
        "measurements",
        "payload_x_drop_schema_public_cascade",
        "payload_x_drop_schema_public_cascade_p20240517",
    }
    sub = registry.cached(hostile)
    assert sub is not None
    mapping = {f.name: f.column for f in sub.fields}
    assert mapping["select"] == "select_" and mapping["scoring_id"] == "scoring_id_2"
    assert mapping["Age"] == "age" and mapping["age"] == "age_2"
    row = await pg.fetchrow(f'SELECT * FROM "{schema}"."{sub.table}"')
    assert row is not None and row["scoring_id"] == "1" and row["scoring_id_2"] == 4 and row[mapping[hostile]] == 1


async def test_concurrent_prepare_of_a_new_subscription(settings: Settings, schema: str) -> None:
    conns = [await asyncpg.connect(settings.dsn) for _ in range(3)]
    try:
        await setup(conns[0], schema)
        records = [german_credit_record("c", subscription_id="racy")]
        results = await asyncio.gather(*(Registry(schema).prepare(c, records) for c in conns))
        subs = [r["racy"] for r in results]
        assert all(isinstance(s, Subscription) for s in subs)
        assert len({s.table for s in subs if isinstance(s, Subscription)}) == 1
        # and concurrent evolution plus partition creation
        new = [
            simple_record(f"e{i}", [*GERMAN_CREDIT_FIELDS, f"new_{i % 2}"], [[None] * 20 + [i]], subscription_id="racy")
            for i in range(3)
        ]
        registries = [Registry(schema) for _ in conns]
        evolved = await asyncio.gather(*(r.prepare(c, new) for r, c in zip(registries, conns, strict=True)))
        await asyncio.gather(
            *(
                r.ensure_partitions(c, e["racy"], [date(2024, 1, 1), date(2024, 1, 2)])  # type: ignore[arg-type]
                for r, c, e in zip(registries, conns, evolved, strict=True)
            )
        )
        stored = await list_subscriptions(conns[0], schema)
        assert len(stored) == 1
        assert {"new_0", "new_1"} <= {f.column for f in stored[0].fields}
        partitions = await conns[0].fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass", f'"{schema}"."{stored[0].table}"'
        )
        assert partitions == 2
    finally:
        for c in conns:
            await c.close()


async def test_declare_validates_and_adds_fields(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    spec: dict[str, Any] = {
        "subscription_id": "gc",
        "deployment_id": "dep-1",
        "fields": [
            {"name": "Age", "type": "integer", "role": "feature"},
            {"name": "prediction", "type": "text", "role": "prediction"},
        ],
    }
    sub = await declare(pg, schema, spec)
    assert (sub.deployment_id, sub.auto_registered, sub.evolve) == ("dep-1", False, True)
    assert [f.type for f in sub.fields] == ["bigint", "text"]
    spec["fields"].append({"name": "probability", "type": "float_array", "role": "probability"})
    sub = await declare(pg, schema, spec)
    assert [f.column for f in sub.fields] == ["age", "prediction", "probability"]
    for bad, message in [
        ({**spec, "fields": [{"name": "Age", "type": "text"}]}, "cannot become"),
        ({**spec, "fields": [{"name": "x", "type": "integr"}]}, "unknown type"),
        ({**spec, "fields": [{"name": "x", "type": "text", "role": "label"}]}, "unknown role"),
        ({**spec, "fields": [{"name": "x", "type": "text"}, {"name": "x", "type": "text"}]}, "declared twice"),
        ({**spec, "extra_key": 1}, "unknown keys"),
        ({"fields": spec["fields"]}, "subscription_id"),
        ({**spec, "fields": []}, "non-empty"),
    ]:
        with pytest.raises(SubscriptionError, match=message):
            await declare(pg, schema, bad)
    assert [f.column for f in (await list_subscriptions(pg, schema))[0].fields] == ["age", "prediction", "probability"]


async def test_meta_fields_and_response_fields(pg: asyncpg.Connection, schema: str) -> None:
    await setup(pg, schema)
    record = simple_record(
        "m", ["x"], [[1.5], [2]], response=Table(["x", "prediction", "score"], [[1.5, 1, 0.1], [2, 0, 0.2]])
    )
    record.request_meta = Table(["region"], [["eu"], ["us"]])
    subs = await _write(pg, Registry(schema), [record])
    sub = subs["simple"]
    assert isinstance(sub, Subscription)
    assert [(f.name, f.role, f.type) for f in sub.fields] == [
        ("x", "feature", "float8"),
        ("region", "meta", "text"),
        ("prediction", "prediction", "bigint"),
        ("score", "response", "float8"),
    ]
    rows = await pg.fetch(f'SELECT x, region, prediction, score FROM "{schema}".payload_simple ORDER BY row_index')
    assert [tuple(r) for r in rows] == [(1.5, "eu", 1, 0.1), (2.0, "us", 0, 0.2)]
