"""The consumer worker against the real broker and database: exactly once, poison, outages, kills, rebalances."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from stream_logger.config import Settings
from stream_logger.errors import StreamLoggerError
from stream_logger.identifiers import quote_ident
from stream_logger.kafka_clients import topic_partitions
from stream_logger.samples import german_credit_record
from stream_logger.worker import Worker, WorkerConfig, WorkerSummary
from tests.support import TcpProxy, produce, setup_datamart

pytestmark = pytest.mark.integration

SUB = "credit_model"


def record(i: int, *, rows: int = 1, sub: str = SUB) -> dict[str, Any]:
    rec = german_credit_record(i, rows=rows)
    rec["subscription_id"] = sub
    rec["scoring_id"] = f"s-{i}"
    return rec


def encode(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)


async def produce_records(settings: Settings, topic: str, start: int, n: int) -> None:
    recs = [record(i) for i in range(start, start + n)]
    await produce(settings, topic, [encode(r) for r in recs], [r["scoring_id"].encode() for r in recs])


def config(topic: str, schema: str, **kw: Any) -> WorkerConfig:
    base: dict[str, Any] = dict(
        topics=(topic,),
        group_id=f"g-{schema}",
        schema=schema,
        until_caught_up=True,
        flush_interval_ms=100,
        max_record_age_s=None,  # the sample records are from 2025
        max_record_lead_s=None,
    )
    base.update(kw)
    return WorkerConfig(**base)


async def run_until_caught_up(settings: Settings, cfg: WorkerConfig) -> WorkerSummary:
    async with Worker(cfg, settings) as worker:
        return await asyncio.wait_for(worker.run(), 120)


async def payload_table(conn: asyncpg.Connection, schema: str, sub: str = SUB) -> str:
    table: str = await conn.fetchval(
        f"SELECT table_name FROM {quote_ident(schema)}.subscriptions WHERE subscription_id = $1", sub
    )
    return f"{quote_ident(schema)}.{quote_ident(table)}"


async def stored_offsets(conn: asyncpg.Connection, schema: str, group: str) -> dict[int, int]:
    rows = await conn.fetch(
        f"SELECT partition, next_offset FROM {quote_ident(schema)}.consumer_offsets WHERE group_id = $1", group
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, [topic])
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def assert_exactly(conn: asyncpg.Connection, schema: str, n: int) -> None:
    """n distinct records stored, each once."""
    table = await payload_table(conn, schema)
    total, distinct = await conn.fetchrow(f"SELECT count(*), count(DISTINCT scoring_id) FROM {table}")
    assert (total, distinct) == (n, n)


@pytest.fixture
async def datamart_schema(settings: Settings, schema: str) -> AsyncIterator[str]:
    await setup_datamart(settings, schema)
    yield schema


async def test_n_in_n_out_with_offsets_stored(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 1500)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema, batch_max_records=400))
    assert summary.messages == 1500
    assert summary.rows == 1500
    assert summary.dead_lettered == 0
    assert summary.duplicates_skipped == 0
    await assert_exactly(pg, datamart_schema, 1500)
    assert await stored_offsets(pg, datamart_schema, f"g-{datamart_schema}") == await end_offsets(settings, topic)
    table = await payload_table(pg, datamart_schema)
    src = await pg.fetchrow(f"SELECT src_topic, src_partition, src_offset FROM {table} WHERE scoring_id = 's-7'")
    assert src["src_topic"] == topic and src["src_offset"] >= 0

    # A second run of the same group finds nothing new and writes nothing.
    again = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert again.messages == 0
    await assert_exactly(pg, datamart_schema, 1500)


async def test_redelivered_and_multi_row_records(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    multi = record(1, rows=5)
    single = record(2)
    # the same record sent three times (a producer retry, a re-sent message), in one batch and across batches
    values = [encode(multi), encode(single), encode(single), encode(single)]
    await produce(settings, topic, values, [b"k"] * 4)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.messages == 4
    assert summary.rows == 6
    assert summary.duplicates_skipped == 2
    table = await payload_table(pg, datamart_schema)
    rows = await pg.fetch(f"SELECT scoring_id, row_index FROM {table} ORDER BY scoring_id, row_index")
    assert [(r["scoring_id"], r["row_index"]) for r in rows] == [("s-1", i) for i in range(5)] + [("s-2", 0)]


async def test_poison_records_are_dead_lettered_and_neighbours_land(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    good = [record(i) for i in range(100)]
    nul = record(1000)
    nul["request"]["values"][0][0] = "less\x000"  # PostgreSQL text cannot hold NUL
    conflict = record(1001)
    conflict["request"]["values"][0][1] = "twelve"  # LoanDuration is an integer column
    overflow = record(1002)
    overflow["request"]["values"][0][1] = 2**63  # does not fit bigint
    short_row = record(1003)
    short_row["request"]["values"][0].pop()
    missing = record(1004)
    del missing["scoring_timestamp"]
    poison: list[tuple[bytes | None, str]] = [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (None, "empty_message"),
        (b"", "empty_message"),
        (encode(missing), "invalid_record"),
        (encode(short_row), "invalid_record"),
        (encode({**record(1005), "schema_version": 9}), "unsupported_version"),
        (encode(nul), "unstorable_value"),
        (encode(conflict), "type_conflict"),
        (encode(overflow), "type_conflict"),
        (b'{"x": "' + b"y" * 200_000 + b'"}', "too_large"),  # the worker below takes 100 kB at most
    ]
    # the first good record registers the subscription (LoanDuration: integer) before the poison arrives
    values = [encode(good[0])] + [v for v, _ in poison] + [encode(r) for r in good[1:]]
    await produce(settings, topic, values, [b"same-partition"] * len(values))
    summary = await run_until_caught_up(settings, config(topic, datamart_schema, max_record_bytes=100_000))
    assert summary.messages == len(values)
    assert summary.rows == 100
    await assert_exactly(pg, datamart_schema, 100)
    letters = await pg.fetch(
        f'SELECT "offset", error_code, detail, value FROM {quote_ident(datamart_schema)}.dead_letters ORDER BY "offset"'
    )
    assert [r["error_code"] for r in letters] == [code for _, code in poison]
    assert [r["value"] for r in letters[:4]] == [v for v, _ in poison[:4]]  # raw bytes kept for re-driving
    by_code = {r["error_code"]: r["detail"] for r in letters}
    assert "LoanDuration" in by_code["type_conflict"]
    assert all(r["detail"] for r in letters)


async def test_unknown_subscription_dead_lettered_when_auto_registration_is_off(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 3)
    summary = await run_until_caught_up(settings, config(topic, datamart_schema, auto_register=False))
    assert summary.dead_letters == {"unknown_subscription": 3}
    assert await pg.fetchval(f"SELECT count(*) FROM {quote_ident(datamart_schema)}.subscriptions") == 0


async def test_missing_datamart_is_a_clear_fatal_error(settings: Settings, topic: str, schema: str) -> None:
    with pytest.raises(StreamLoggerError) as err:
        await run_until_caught_up(settings, config(topic, schema))
    assert schema in str(err.value)
    cli = subprocess.run(
        [sys.executable, "-m", "stream_logger", "consume", "--topic", topic, "--schema", schema, "--until-caught-up"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode != 0
    assert schema in cli.stderr and "Traceback" not in cli.stderr


async def test_database_outage_pauses_then_recovers_exactly(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    dsn = urlsplit(settings.dsn)
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.start()
    proxied = Settings(
        bootstrap_servers=settings.bootstrap_servers,
        dsn=settings.dsn.replace(f":{dsn.port}/", f":{proxy.port}/"),
    )
    cfg = config(topic, datamart_schema, until_caught_up=False, batch_max_records=200, max_in_flight_batches=1)
    await produce_records(settings, topic, 0, 500)
    async with Worker(cfg, proxied) as worker:
        run = asyncio.create_task(worker.run())
        await wait_for_rows(pg, datamart_schema, 500)
        await proxy.cut()
        await produce_records(settings, topic, 500, 2000)  # keeps flowing while the database is away
        await asyncio.sleep(4)
        assert not run.done()  # the worker waits; it does not exit or skip
        assert worker.metrics.paused_partitions._value.get() > 0  # backpressure: fetching paused
        assert worker._ready.qsize() <= 1
        await proxy.restore()
        await wait_for_rows(pg, datamart_schema, 2500)
        worker.request_stop()
        summary = await asyncio.wait_for(run, 60)
    await proxy.stop()
    assert summary.duplicates_skipped == 0
    await assert_exactly(pg, datamart_schema, 2500)
    assert worker.metrics.retries.labels("postgresql")._value.get() > 0


async def wait_for_rows(conn: asyncpg.Connection, schema: str, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        exists = await conn.fetchval(
            f"SELECT count(*) FROM {quote_ident(schema)}.subscriptions WHERE subscription_id = $1", SUB
        )
        if exists:
            count = await conn.fetchval(f"SELECT count(*) FROM {await payload_table(conn, schema)}")
            if count >= n:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {n} rows within {timeout_s}s, have {count}")


def spawn_worker(topic: str, schema: str, *extra: str, stderr: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "stream_logger", "consume", "--topic", topic, "--schema", schema]
    args += ["--group", f"g-{schema}", "--batch-max-records", "100", "--flush-interval-ms", "50"]
    args += ["--max-record-age", "none", *extra]  # the sample records are from 2025
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)


async def test_sigkill_mid_stream_then_restart_is_exact(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 4000)
    proc = spawn_worker(topic, datamart_schema)
    try:
        await wait_for_rows(pg, datamart_schema, 300)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    table = await payload_table(pg, datamart_schema)
    assert await pg.fetchval(f"SELECT count(*) FROM {table}") < 4000  # really killed mid-stream
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.duplicates_skipped == 0  # restarted exactly where the datamart's offsets said
    await assert_exactly(pg, datamart_schema, 4000)


async def test_sigterm_finishes_the_batch_and_exits_zero(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 3000)
    proc = spawn_worker(topic, datamart_schema)
    await wait_for_rows(pg, datamart_schema, 200)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.duplicates_skipped == 0
    await assert_exactly(pg, datamart_schema, 3000)


async def test_workers_join_and_leave_while_records_flow(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    cfg = config(topic, datamart_schema, until_caught_up=False, batch_max_records=100)
    producing = asyncio.create_task(produce_in_waves(settings, topic, waves=12, per_wave=250))
    w1, w2, w3 = Worker(cfg, settings), Worker(cfg, settings), Worker(cfg, settings)
    await w1.start()
    await w2.start()
    r1, r2 = asyncio.create_task(w1.run()), asyncio.create_task(w2.run())
    await asyncio.sleep(3)
    await w3.start()
    r3 = asyncio.create_task(w3.run())
    await asyncio.sleep(3)
    w1.request_stop()  # one leaves
    await asyncio.wait_for(r1, 60)
    await w1.stop()
    await producing
    await wait_for_rows(pg, datamart_schema, 3000, timeout_s=90)
    for w, r in ((w2, r2), (w3, r3)):
        w.request_stop()
        await asyncio.wait_for(r, 60)
        await w.stop()
    summaries = [w.summary for w in (w1, w2, w3)]
    assert sum(s.duplicates_skipped for s in summaries) == 0
    assert sum(s.messages for s in summaries) == 3000
    await assert_exactly(pg, datamart_schema, 3000)
    assert await stored_offsets(pg, datamart_schema, cfg.group_id) == await end_offsets(settings, topic)


async def produce_in_waves(settings: Settings, topic: str, waves: int, per_wave: int) -> None:
    for w in range(waves):
        await produce_records(settings, topic, w * per_wave, per_wave)
        await asyncio.sleep(0.5)


async def test_metrics_and_health_endpoints(settings: Settings, topic: str, datamart_schema: str) -> None:
    await produce_records(settings, topic, 0, 50)
    cfg = config(topic, datamart_schema, until_caught_up=False, metrics_port=0)
    async with Worker(cfg, settings) as worker:
        run = asyncio.create_task(worker.run())
        port = worker.metrics_port
        assert port is not None
        deadline = time.monotonic() + 60
        while worker.summary.messages < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

        def get(path: str) -> tuple[int, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()

        health, _ = await asyncio.to_thread(get, "/healthz")
        ready, _ = await asyncio.to_thread(get, "/readyz")
        status, body = await asyncio.to_thread(get, "/metrics")
        worker.request_stop()
        await run
    assert (health, ready, status) == (200, 200, 200)
    assert "stream_logger_rows_written_total 50.0" in body
    assert "stream_logger_ready 1.0" in body
    assert "stream_logger_batch_write_seconds_bucket" in body


async def test_a_new_field_mid_batch_becomes_a_column_and_no_row_is_lost(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 10)
    await run_until_caught_up(settings, config(topic, datamart_schema))  # registers the subscription
    evolved = record(100)
    evolved["request"]["fields"].append("IncomeBand")
    evolved["request"]["values"][0].append("high")
    values = [encode(record(i)) for i in range(10, 20)] + [encode(evolved)] + [encode(record(i)) for i in range(20, 30)]
    await produce(settings, topic, values, [b"one-partition"] * len(values))
    summary = await run_until_caught_up(settings, config(topic, datamart_schema, batch_max_records=1000))
    assert summary.rows == 21 and summary.dead_lettered == 0
    await assert_exactly(pg, datamart_schema, 31)
    table = await payload_table(pg, datamart_schema)
    assert await pg.fetchval(f"SELECT income_band FROM {table} WHERE scoring_id = 's-100'") == "high"
    assert await pg.fetchval(f"SELECT count(income_band) FROM {table}") == 1


async def test_a_worker_started_before_its_database_waits_for_it(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 50)
    dsn = urlsplit(settings.dsn)
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.start()
    await proxy.cut()  # its port now refuses connections, like a database not up yet
    proxied = Settings(settings.bootstrap_servers, settings.dsn.replace(f":{dsn.port}/", f":{proxy.port}/"))
    run = asyncio.create_task(run_until_caught_up(proxied, config(topic, datamart_schema)))
    await asyncio.sleep(2)
    assert not run.done()  # waiting, not failed
    await proxy.restore()
    summary = await asyncio.wait_for(run, 60)
    await proxy.stop()
    assert summary.messages == 50
    await assert_exactly(pg, datamart_schema, 50)
