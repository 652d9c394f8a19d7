"""Whether a Kafka broker and a PostgreSQL server already answer at the configured addresses."""

from __future__ import annotations

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from ..config import Settings

__all__ = ["services_answer"]


async def services_answer(settings: Settings, timeout_s: float = 3.0) -> bool:
    """True when a PostgreSQL connection with ``settings.dsn`` and a Kafka metadata request both succeed."""
    try:
        conn = await asyncpg.connect(settings.dsn, timeout=timeout_s)
        await conn.close()
        admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs(request_timeout_ms=int(timeout_s * 1000)))
        await admin.start()
        await admin.close()
    except Exception:
        return False
    return True
