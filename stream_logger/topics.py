"""Creating and deleting topics (the demo, tests and benchmarks make their own)."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .retry import kafka_errors

__all__ = ["create_topic", "delete_topic"]


async def create_topic(bootstrap_servers: str, name: str, partitions: int = 3, replication_factor: int = 1) -> None:
    """Create a topic; Kafka failures become BrokerUnavailable or FatalError."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    with kafka_errors(f"creating topic {name}"):
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)]
            )
        finally:
            await admin.close()


async def delete_topic(bootstrap_servers: str, name: str) -> None:
    """Delete a topic, best effort (for clean-ups: a failure is ignored)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    with contextlib.suppress(Exception):
        await admin.start()
        try:
            await admin.delete_topics([name])
        finally:
            await admin.close()
