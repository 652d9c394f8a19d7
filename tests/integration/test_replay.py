"""Replay a topic into a fresh schema: same rows as the live worker, time windows, resume, no group touched."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from stream_logger.config import Settings
from stream_logger.errors import DatamartError
from stream_logger.identifiers import quote_ident
from stream_logger.replay import plan_replay
from stream_logger.worker import Worker, WorkerSummary
from tests.support import (
    config,
    drop_schema,
    encode,
    produce,
    produce_records,
    record,
    run_until_caught_up,
    setup_datamart,
    unique_name,
)

pytestmark = pytest.mark.integration

PAYLOAD_COLUMNS = "scoring_id, row_index, scoring_timestamp, src_topic, src_partition, src_offset, loan_duration, sex"


@pytest.fixture
async def other_schema(settings: Settings) -> AsyncIterator[str]:
    name = unique_name("r")
    yield name
    await drop_schema(settings, name)


async def replay(settings: Settings, topic: str, schema: str, **kw: Any) -> WorkerSummary:
    plan = await plan_replay(settings, [topic], schema, **kw)
    async with Worker(plan.worker_config(schema, flush_interval_ms=100), settings) as worker:
        return await asyncio.wait_for(worker.run(), 120)


async def contents(conn: asyncpg.Connection, schema: str) -> tuple[list[Any], list[Any]]:
    table = await conn.fetchval(f"SELECT table_name FROM {quote_ident(schema)}.subscriptions")
    rows = await conn.fetch(
        f"SELECT {PAYLOAD_COLUMNS} FROM {quote_ident(schema)}.{quote_ident(table)} ORDER BY scoring_id, row_index"
    )
    letters = await conn.fetch(
        f'SELECT topic, partition, "offset", key, value, error_code, detail '
        f'FROM {quote_ident(schema)}.dead_letters ORDER BY topic, partition, "offset"'
    )
    return [tuple(r) for r in rows], [tuple(r) for r in letters]


async def group_offsets(settings: Settings, topic: str, group: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    finally:
        await consumer.stop()


async def test_replay_equals_the_live_worker_and_leaves_its_group_alone(
    settings: Settings, topic: str, schema: str, other_schema: str, pg: asyncpg.Connection
) -> None:
    await setup_datamart(settings, schema)
    values: list[bytes | None] = [encode(record(i, rows=1 + i % 3)) for i in range(600)]
    values[100:100] = [b"{broken", None, encode({**record(9999), "schema_version": 2})]
    await produce(settings, topic, values, [str(i).encode() for i in range(len(values))])
    live = await run_until_caught_up(settings, config(topic, schema))
    before = await group_offsets(settings, topic, f"g-{schema}")

    replayed = await replay(settings, topic, other_schema)

    assert replayed.messages == live.messages == len(values)
    assert await contents(pg, schema) == await contents(pg, other_schema)
    assert await group_offsets(settings, topic, f"g-{schema}") == before


async def test_from_and_to_select_by_message_time(
    settings: Settings, topic: str, schema: str, pg: asyncpg.Connection
) -> None:
    # recent times: messages older than the broker's retention (7 days) may be deleted under the test's feet
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for i in range(30):  # one message a minute, explicit Kafka timestamps
            ts = int((base + timedelta(minutes=i)).timestamp() * 1000)
            await producer.send_and_wait(topic, encode(record(i)), partition=i % 3, timestamp_ms=ts)
    finally:
        await producer.stop()
    summary = await replay(
        settings, topic, schema, from_time=base + timedelta(minutes=10), to_time=base + timedelta(minutes=20)
    )
    assert summary.messages == 10
    table = await pg.fetchval(f"SELECT table_name FROM {quote_ident(schema)}.subscriptions")
    ids = await pg.fetch(f"SELECT scoring_id FROM {quote_ident(schema)}.{quote_ident(table)}")
    assert sorted(int(r["scoring_id"][2:]) for r in ids) == list(range(10, 20))


async def test_subscription_filter(settings: Settings, topic: str, schema: str, pg: asyncpg.Connection) -> None:
    values = [encode(record(i, sub="keep" if i % 2 else "drop")) for i in range(40)]
    await produce(settings, topic, values)
    summary = await replay(settings, topic, schema, subscriptions=["keep"])
    assert summary.skipped == 20
    subs = await pg.fetch(f"SELECT subscription_id FROM {quote_ident(schema)}.subscriptions")
    assert [r["subscription_id"] for r in subs] == ["keep"]


async def test_refuses_a_schema_with_data_and_touches_nothing(
    settings: Settings, topic: str, schema: str, other_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 20)
    await replay(settings, topic, schema)
    before = await contents(pg, schema)
    with pytest.raises(DatamartError, match="already holds"):
        await replay(settings, topic, schema)
    assert await contents(pg, schema) == before
    cli = subprocess.run(
        [sys.executable, "-m", "stream_logger", "replay", "--topic", topic, "--schema", schema],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode != 0 and "already holds" in cli.stderr and "Traceback" not in cli.stderr
    # --drop-existing recreates it
    again = await replay(settings, topic, schema, drop_existing=True)
    assert again.messages == 20
    assert await contents(pg, schema) == before


async def test_killed_replay_resumed_equals_an_uninterrupted_one(
    settings: Settings, topic: str, schema: str, other_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 5000)
    await replay(settings, topic, other_schema)  # the uninterrupted reference

    cmd = [sys.executable, "-m", "stream_logger", "replay", "--topic", topic, "--schema", schema]
    proc = subprocess.Popen([*cmd, "--batch-max-records", "100"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while await replayed_so_far(pg, schema) < 500 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert 500 <= await replayed_so_far(pg, schema) < 5000  # really interrupted mid-way
    # new messages after the interruption must not change what the resumed replay ends with
    await produce_records(settings, topic, 5000, 100)
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert await contents(pg, schema) == await contents(pg, other_schema)


async def replayed_so_far(pg: asyncpg.Connection, schema: str) -> int:
    """Messages committed by the replay into ``schema`` (its offsets start at 0 on a fresh topic)."""
    if not await pg.fetchval("SELECT to_regclass($1)", f"{quote_ident(schema)}.consumer_offsets"):
        return 0
    n: int = await pg.fetchval(f"SELECT coalesce(sum(next_offset), 0) FROM {quote_ident(schema)}.consumer_offsets")
    return n


async def test_records_deleted_after_planning_do_not_hang_the_replay(
    settings: Settings, topic: str, schema: str, pg: asyncpg.Connection
) -> None:
    """Retention (here: an explicit delete) may remove records a replay planned to read; it finishes anyway."""
    await produce(settings, topic, [encode(record(i)) for i in range(30)], [b"p"] * 30)  # one partition
    plan = await plan_replay(settings, [topic], schema)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        ends = {tp: end for tp, end in plan.end.items() if end > 0}
        await admin.delete_records({tp: RecordsToDelete(before_offset=end) for tp, end in ends.items()})
    finally:
        await admin.close()
    async with Worker(plan.worker_config(schema, flush_interval_ms=100), settings) as worker:
        summary = await asyncio.wait_for(worker.run(), 60)
    assert summary.messages == 0
