"""CSV COPY against the real server: the rows the sink writes as CSV lines are exactly the rows binary COPY writes.

The same records, hostile and edge values included, go through a sink that writes CSV lines (the default) and one
that writes every row in tuples (binary COPY), each into its own subscription's table; the two tables must then
hold the same values, and both sinks must dead-letter the same records for the same reasons. The CSV sink's
de-duplication and bisection paths are checked too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from stream_logger.registry import Registry
from stream_logger.sink import PreparedBatch, Sink, WriteOutcome
from tests.support import setup_datamart

pytestmark = pytest.mark.integration

NOTES: list[Any] = [
    "plain", "", "null", "NULL", "a,b", "é ü 中 😀", "\x7f", " padded ", "{0.1}", "[1,2]", None,
    'say "hi"', "tab\there", "back\\slash", "\\.", "line\nbreak",  # a backslash in the JSON: binary COPY
]  # fmt: skip
SCORES: list[Any] = [1.5, 0.0, -0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, -2.5e-300, 3, None]
BIGS: list[Any] = [0, 2**63 - 1, -(2**63), None, 42]
FLAGS: list[Any] = [True, False, None]
PROBABILITIES: list[Any] = [[0.1, 0.9], [], [None], [1.0, None, -0.0, 1e300], None]
TIMESTAMPS = [
    "2025-01-01T00:00:00Z",
    "0001-01-01T00:00:01Z",
    "9999-12-31T23:59:59.999998Z",
    "2024-02-29T12:30:00.000001+05:30",
    "2025-06-01t10:00:00z",
    "2025-06-02T10:00:00.1234567890-01:00",
    "2025-01-02T00:00:00Z",
    "2025-01-03T00:00:00Z",
]
# Valid v1, but dead-lettered (unstorable_value): the UTC day is in year 10000, or binary COPY would write the
# instant as infinity or -infinity.
UNSTORABLE = ["9999-12-31T23:30:00-01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]
TIMESTAMPS[1:1] = UNSTORABLE
TAGS: list[Any] = [None, {"env": "demo"}, {"q": "a,b", "e": "é"}, {"quote": 'x"y'}]


def record(i: int, sub: str) -> dict[str, Any]:
    """Record ``i`` of the corpus: the edge values in turn, a multi-row record and a failed call now and then."""
    rows = 3 if i % 7 == 3 else 1

    def pick(values: list[Any], k: int = 0) -> Any:
        return values[(i + k) % len(values)]

    request = [[pick(NOTES, r), pick(SCORES, r), pick(BIGS, r), pick(FLAGS, r)] for r in range(rows)]
    rec: dict[str, Any] = {
        "schema_version": 1,
        "scoring_id": f"id-{i}",
        "scoring_timestamp": pick(TIMESTAMPS),
        "subscription_id": sub,
        "request": {"fields": ["note", "score", "big", "flag"], "values": request},
        "response_time_ms": pick([None, 0.5, 12]),
    }
    if i % 11 == 5:
        rec.update(status_code=500, error="boom, it failed")
    else:
        rec["response"] = {
            "fields": ["prediction", "probability"],
            "values": [[pick(["Risk", "No Risk"], r), pick(PROBABILITIES, r)] for r in range(rows)],
        }
    tags = pick(TAGS)
    if tags is not None:
        rec["tags"] = tags
    return rec


# Declares each field's type (the first record of a subscription does): text, float8, bigint, boolean, float8[].
FIRST = {
    "schema_version": 1,
    "scoring_id": "first",
    "scoring_timestamp": "2025-01-01T00:00:00Z",
    "request": {"fields": ["note", "score", "big", "flag"], "values": [["x", 0.5, 1, True]]},
    "response": {"fields": ["prediction", "probability"], "values": [["Risk", [0.5, 0.5]]]},
}
N = 120


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def messages(sub: str, topic: str, start: int = 0) -> list[Msg]:
    docs = [{**FIRST, "subscription_id": sub}] + [record(i, sub) for i in range(N)]
    return [Msg(topic, 0, start + k, None, orjson.dumps(d)) for k, d in enumerate(docs)]


@pytest.fixture
async def pool(settings: Settings, schema: str) -> AsyncIterator[asyncpg.Pool]:
    await setup_datamart(settings, schema)
    pool = await asyncpg.create_pool(settings.dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def write(sink: Sink, msgs: list[Msg]) -> tuple[PreparedBatch, WriteOutcome]:
    ranges = {(msgs[0].topic, 0): (msgs[0].offset, msgs[-1].offset + 1)}
    batch = await sink.prepare(msgs, ranges)
    return batch, await sink.write(batch)


async def write_corpus(sink: Sink, sub: str, topic: str) -> tuple[PreparedBatch, WriteOutcome]:
    """The corpus in two batches: the first registers the subscription, so the second takes the compiled path."""
    msgs = messages(sub, topic)
    _, first = await write(sink, msgs[:1])
    batch, outcome = await write(sink, msgs[1:])
    outcome.rows_written += first.rows_written
    return batch, outcome


async def table_of(pg: asyncpg.Connection, schema: str, sub: str) -> str:
    name = await pg.fetchval(
        f"SELECT table_name FROM {quote_ident(schema)}.subscriptions WHERE subscription_id = $1", sub
    )
    return f"{quote_ident(schema)}.{quote_ident(name)}"


async def test_csv_and_binary_copy_store_the_same_rows_and_dead_letters(
    pool: asyncpg.Pool, pg: asyncpg.Connection, schema: str
) -> None:
    registry = Registry(schema)
    csv_batch, csv_out = await write_corpus(Sink(pool, schema, "g-csv", registry), "by_csv", "csv")
    bin_batch, bin_out = await write_corpus(Sink(pool, schema, "g-bin", registry, csv=False), "by_binary", "bin")

    # Many rows went as CSV lines; those from messages with a backslash (or that only the reference path maps)
    # went in tuples, in the same batch.
    csv_rows = sum(len(t.rows) for t in csv_batch.tables if t.csv)
    assert csv_rows >= 30 and any(not t.csv for t in csv_batch.tables)
    assert not any(t.csv for t in bin_batch.tables)

    assert csv_out.rows_written == bin_out.rows_written > N // 2
    unstorable = sum(record(i, "x")["scoring_timestamp"] in UNSTORABLE for i in range(N))
    assert csv_out.dead_letters == bin_out.dead_letters == {"unstorable_value": unstorable}
    letters = await pg.fetch(
        f'SELECT topic, "offset", error_code, detail FROM {quote_ident(schema)}.dead_letters ORDER BY topic, "offset"'
    )
    by_topic = {
        t: [(r["offset"], r["error_code"], r["detail"]) for r in letters if r["topic"] == t] for t in ("csv", "bin")
    }
    assert by_topic["csv"] == by_topic["bin"]
    details = {detail for _, _, detail in by_topic["csv"]}
    assert any("outside years 0001 to 9999 in UTC" in d for d in details)
    assert any("writes as -infinity or infinity" in d for d in details)

    csv_table, bin_table = await table_of(pg, schema, "by_csv"), await table_of(pg, schema, "by_binary")
    columns = [
        quote_ident(r["column_name"])
        for r in await pg.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
            "ORDER BY ordinal_position",
            schema,
            csv_table.split(".")[1].strip('"'),
        )
        if r["column_name"] not in ("src_topic", "ingested_at")
    ]
    assert len(columns) > 20
    cols = ", ".join(columns)
    for a, b in ((csv_table, bin_table), (bin_table, csv_table)):
        differ = await pg.fetch(f"SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}")
        assert differ == [], f"rows in {a} and not in {b}: {differ[:3]}"
    # EXCEPT compares -0.0 and 0.0 as equal; their text does not.
    signs = "SELECT scoring_id, row_index, score::text, probability::text FROM {} ORDER BY 1, 2"
    assert await pg.fetch(signs.format(csv_table)) == await pg.fetch(signs.format(bin_table))
    notes = {r["note"] for r in await pg.fetch(f"SELECT note FROM {csv_table}")}
    assert notes == {*NOTES, "x"}  # every note stored as sent (x: the first record)


async def test_csv_rows_delivered_again_are_skipped_and_a_refused_row_is_isolated(
    pool: asyncpg.Pool, pg: asyncpg.Connection, schema: str
) -> None:
    registry = Registry(schema)
    sink = Sink(pool, schema, "g", registry)
    _, outcome = await write_corpus(sink, "sub", "t")
    written = outcome.rows_written
    first = messages("sub", "t")

    # The same records delivered again at later offsets: COPY conflicts, the CSV lines go through the staging table.
    _, again = await write(sink, messages("sub", "t", start=len(first)))
    assert (again.rows_written, again.duplicates_skipped) == (0, written)

    # PostgreSQL refuses one record's value (a constraint added behind the registry's back): that record alone is
    # dead-lettered, its CSV neighbours land.
    table = await table_of(pg, schema, "sub")
    await pg.execute(f"ALTER TABLE {table} ADD CONSTRAINT not_7777 CHECK (big IS DISTINCT FROM 7777)")
    base = 2 * len(first)  # the stored next offset
    fresh = [Msg("t", 0, base + i, None, orjson.dumps({**FIRST, "subscription_id": "sub", "scoring_id": f"n-{i}"}))
             for i in range(20)]  # fmt: skip
    refused = orjson.loads(fresh[13].value or b"")
    refused["request"]["values"][0][2] = 7777
    fresh[13].value = orjson.dumps(refused)
    batch, outcome = await write(sink, fresh)
    assert all(t.csv for t in batch.tables)
    assert outcome.rows_written == 19 and outcome.dead_letters == {"unstorable_value": 1}
    letter = await pg.fetchrow(
        f'SELECT "offset", detail FROM {quote_ident(schema)}.dead_letters WHERE "offset" >= $1', base
    )
    assert letter["offset"] == base + 13 and "not_7777" in letter["detail"]
