"""Read a test topic back."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from stream_logger.config import Settings


async def consume_all(
    settings: Settings, topic: str, expected: int, timeout_s: float = 30.0
) -> list[tuple[bytes, bytes]]:
    """Every (key, value) in ``topic``, reading until ``expected`` messages arrived or ``timeout_s`` passed."""
    consumer = AIOKafkaConsumer(
        topic, **settings.aiokafka_kwargs(auto_offset_reset="earliest", enable_auto_commit=False)
    )
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                out.extend((m.key, m.value) for m in messages)
        if len(out) >= expected:  # anything more (duplicates) shows up within a moment
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                out.extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    return out
