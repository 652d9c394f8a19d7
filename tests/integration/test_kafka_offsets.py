"""Kafka's own view of a worker group agrees with the datamart: distinct client ids, and the group's Kafka offsets
converge back to the datamart's positions after someone resets them on the Kafka side."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.topics import create_topic
from stream_logger.worker import Worker
from tests.support import (
    assert_exactly,
    config,
    end_offsets,
    kafka_offsets,
    produce_records,
    run_until_caught_up,
    stored_offsets,
    unique_name,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


async def reset_kafka_offsets(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """What ``kafka-consumer-groups.sh --reset-offsets`` does on an empty group: commit these offsets for it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): offset for p, offset in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()
    assert await kafka_offsets(settings, group, topic) == offsets


async def group_client_ids(settings: Settings, group: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (description,) = response.to_object()["groups"]
    return sorted(member["client_id"] for member in description["members"])


async def eventually_equal(
    what: str, get: Callable[[], Awaitable[dict[int, int]]], want: dict[int, int], timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    got = await get()
    while got != want and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        got = await get()
    assert got == want, f"{what}: {got} != {want}"


async def test_each_worker_of_a_group_has_its_own_client_id(
    settings: Settings, topic: str, datamart_schema: str
) -> None:
    cfg = config(topic, datamart_schema, until_caught_up=False)
    async with Worker(cfg, settings) as first, Worker(cfg, settings) as second:
        runs = [asyncio.create_task(w.run()) for w in (first, second)]
        deadline = time.monotonic() + 60
        ids: list[str] = []
        while time.monotonic() < deadline:
            ids = await group_client_ids(settings, cfg.group_id)
            if len(ids) == 2 and first.ready and second.ready:
                break
            await asyncio.sleep(0.5)
        for w in (first, second):
            w.request_stop()
        await asyncio.gather(*runs)
    assert ids == sorted([first.client_id, second.client_id])
    assert len(set(ids)) == 2
    for client_id in ids:
        assert client_id.startswith(f"stream-logger-{socket.gethostname()}-{os.getpid()}"), client_id


async def test_after_a_kafka_side_reset_to_zero_kafka_converges_to_the_datamart(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 60)
    cfg = config(topic, datamart_schema, until_caught_up=False)
    await run_until_caught_up(settings, config(topic, datamart_schema))
    truth = await stored_offsets(pg, datamart_schema, cfg.group_id)
    assert truth == await end_offsets(settings, topic) and len(truth) == 3
    assert await kafka_offsets(settings, cfg.group_id, topic) == truth

    # The workers are stopped; someone rewinds the group in Kafka. No new record arrives.
    await reset_kafka_offsets(settings, cfg.group_id, topic, dict.fromkeys(truth, 0))
    async with Worker(cfg, settings) as worker:
        run = asyncio.create_task(worker.run())
        await eventually_equal("Kafka's offsets", lambda: kafka_offsets(settings, cfg.group_id, topic), truth)
        worker.request_stop()
        summary = await run
    assert summary.messages == 0 and summary.duplicates_skipped == 0
    await assert_exactly(pg, datamart_schema, 60)
    assert await stored_offsets(pg, datamart_schema, cfg.group_id) == truth


async def test_a_kafka_side_reset_to_latest_skips_nothing(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await produce_records(settings, topic, 0, 60)
    cfg = config(topic, datamart_schema)
    await run_until_caught_up(settings, cfg)
    assert len(await stored_offsets(pg, datamart_schema, cfg.group_id)) == 3  # the datamart knows every partition

    # More records arrive while the workers are stopped, and someone moves the group to the end in Kafka.
    await produce_records(settings, topic, 60, 40)
    ends = await end_offsets(settings, topic)
    await reset_kafka_offsets(settings, cfg.group_id, topic, ends)
    summary = await run_until_caught_up(settings, cfg)

    # The datamart's positions ruled: the 40 records Kafka's offsets skipped were written, once each.
    assert summary.messages == 40 and summary.duplicates_skipped == 0
    await assert_exactly(pg, datamart_schema, 100)
    assert await stored_offsets(pg, datamart_schema, cfg.group_id) == ends
    assert await kafka_offsets(settings, cfg.group_id, topic) == ends


async def test_a_stop_while_the_broker_is_down_is_not_held_up_by_the_kafka_commit(
    settings: Settings, private_broker: DevStack, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    private = Settings(private_broker.bootstrap_servers, settings.dsn)
    topic = unique_name("t")
    await create_topic(private.bootstrap_servers, topic, partitions=3)
    await produce_records(private, topic, 0, 30)
    # A progress tick (which commits the datamart's positions to Kafka) every half second.
    cfg = config(topic, datamart_schema, until_caught_up=False, progress_interval_s=0.5, shutdown_grace_s=5)
    async with Worker(cfg, private) as worker:
        run = asyncio.create_task(worker.run())
        await wait_for_rows(pg, datamart_schema, 30)
        await asyncio.to_thread(private_broker.kafka.stop)
        await asyncio.sleep(3)  # several ticks, each trying to commit to a broker that is gone
        began = time.monotonic()
        worker.request_stop()
        summary = await asyncio.wait_for(run, 30)
        stopped_in_s = time.monotonic() - began
    assert summary.messages == 30
    assert stopped_in_s < cfg.shutdown_grace_s + 5, stopped_in_s
