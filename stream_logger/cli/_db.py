"""A database connection for one CLI command, with connection failures translated into our error tree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ..config import Settings, redact_dsn
from ..errors import DatabaseUnavailable, FatalError

__all__ = ["connect"]


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """An open connection to ``settings.dsn``, closed afterwards."""
    try:
        conn = await asyncpg.connect(settings.dsn, timeout=10)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise FatalError(f"PostgreSQL at {redact_dsn(settings.dsn)} refused the credentials: {exc}") from exc
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {redact_dsn(settings.dsn)}: {exc}") from exc
    try:
        yield conn
    finally:
        await conn.close()
