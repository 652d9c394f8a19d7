"""Fixtures for tests against the real Kafka broker and PostgreSQL server of the dev stack.

The session starts the dev stack (``stream-logger dev up``) unless both services already answer. Each test gets
its own topic and its own PostgreSQL schema, removed afterwards, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.devstack import services_answer
from stream_logger.identifiers import quote_ident
from stream_logger.topics import create_topic, delete_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    """The shared settings; the dev stack is brought up first when the services do not answer."""
    settings = Settings.from_env()
    if not asyncio.run(services_answer(settings)):
        from stream_logger.devstack import DevStack

        DevStack.from_env(secure=True).up()  # with the listener test_secure_kafka.py needs
    yield settings


def unique_name(prefix: str) -> str:
    """A name no other test uses: ``prefix_<12 hex digits>`` (valid as topic and as schema name)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


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


async def drop_schema(settings: Settings, name: str) -> None:
    """Drop a test's schema and everything in it, if it exists."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the dev stack's database."""
    conn = await asyncpg.connect(settings.dsn)
    yield conn
    await conn.close()
