"""Fixtures for tests against the real Kafka broker and PostgreSQL server of the dev stack.

The session starts the dev stack (``stream-logger dev up``) unless both services already answer. Each test gets
its own topic and its own PostgreSQL schema, removed afterwards, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.devstack import DevStack, services_answer
from stream_logger.topics import create_topic, delete_topic
from tests.support import drop_schema, free_ports, setup_datamart, unique_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    """The shared settings; the dev stack is brought up first when the services do not answer."""
    settings = Settings.from_env()
    if not asyncio.run(services_answer(settings)):
        DevStack.from_env(secure=True).up()  # with the listener test_secure_kafka.py needs
    yield settings


@pytest.fixture
async def topic(settings: Settings) -> AsyncIterator[str]:
    """A fresh topic with 3 partitions, deleted after the test."""
    name = unique_name("t")
    await create_topic(settings.bootstrap_servers, name, partitions=3)
    yield name
    await delete_topic(settings.bootstrap_servers, name)


@pytest.fixture
async def schema(settings: Settings) -> AsyncIterator[str]:
    """A schema name no other test uses; the schema (if the test created it) is dropped afterwards."""
    name = unique_name("s")
    yield name
    await drop_schema(settings, name)


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the dev stack's database."""
    conn = await asyncpg.connect(settings.dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def datamart_schema(settings: Settings, schema: str) -> AsyncIterator[str]:
    """A fresh schema with a datamart set up in it."""
    await setup_datamart(settings, schema)
    yield schema


@pytest.fixture
def private_broker() -> Iterator[DevStack]:
    """A broker of its own (the shared one is never stopped), on free ports, with a fresh home."""
    home = Path(tempfile.mkdtemp(prefix="sl-broker-"))
    kafka_port, controller_port, pg_port = free_ports(3)
    stack = DevStack(home / "h", kafka_port=kafka_port, kafka_controller_port=controller_port, pg_port=pg_port)
    try:
        stack.kafka.wait_ready(stack.kafka.start())
        yield stack
    finally:
        stack.kafka.stop()
        shutil.rmtree(home, ignore_errors=True)
