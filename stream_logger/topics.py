"""Creating and deleting topics (the demo, tests and benchmarks make their own)."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .config import Settings
from .kafka_clients import start_client
from .retry import kafka_errors

__all__ = ["create_topic", "delete_topic"]


def _admin(settings: Settings | str) -> tuple[AIOKafkaAdminClient, Settings]:
    """An admin client for ``settings`` (a plain broker list: plaintext there)."""
    settings = Settings(bootstrap_servers=settings) if isinstance(settings, str) else settings
    return AIOKafkaAdminClient(**settings.aiokafka_kwargs()), settings


async def create_topic(settings: Settings | str, name: str, partitions: int = 3, replication_factor: int = 1) -> None:
    """Create a topic; Kafka failures become BrokerUnavailable or FatalError."""
    admin, settings = _admin(settings)
    try:
        await start_client(admin, settings, f"creating topic {name}")
        with kafka_errors(f"creating topic {name}"):
            await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)]
            )
    finally:
        await admin.close()


async def delete_topic(settings: Settings | str, name: str) -> None:
    """Delete a topic, best effort (for clean-ups: a failure is ignored)."""
    admin, settings = _admin(settings)
    with contextlib.suppress(Exception):
        await admin.start()
        try:
            await admin.delete_topics([name])
        finally:
            await admin.close()
