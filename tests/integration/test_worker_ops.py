"""The worker in operation: signals during start-up and outages, health and readiness probes, condensed logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.topics import create_topic, delete_topic
from stream_logger.worker import Worker
from tests.integration.conftest import unique_name
from tests.integration.test_worker import (
    config,
    datamart_schema,
    produce_records,
    wait_for_rows,
)

pytestmark = pytest.mark.integration

__all__ = ["datamart_schema"]  # a fixture, imported for the tests below


@pytest.fixture
async def future_topic(settings: Settings) -> AsyncIterator[str]:
    """A topic name that does not exist yet (the test creates it), deleted afterwards."""
    name = unique_name("t")
    yield name
    await delete_topic(settings.bootstrap_servers, name)


async def test_a_topic_created_after_the_worker_started_is_picked_up_in_seconds(
    settings: Settings, future_topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    cfg = config(future_topic, datamart_schema, until_caught_up=False)
    async with Worker(cfg, settings) as worker:
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(3)  # subscribed to a topic that is not there
        await create_topic(settings.bootstrap_servers, future_topic, partitions=3)
        await produce_records(settings, future_topic, 0, 30)
        await wait_for_rows(pg, datamart_schema, 30, timeout_s=40)
        worker.request_stop()
        await asyncio.wait_for(run, 30)
