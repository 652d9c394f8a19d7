"""What a worker's ``/healthz`` and ``/readyz`` read, and the server that answers them with ``/metrics``.

A watch task beats a heartbeat every second: an event loop wedged for :data:`LIVENESS_TIMEOUT_S` stops it, and
``/healthz`` says so. Once the worker is connected, the same task probes PostgreSQL whenever nothing else told
whether it answers for a few seconds (an idle worker), so ``/readyz`` notices an outage on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg

from .errors import ConfigError
from .metrics import MetricsServer, WorkerMetrics
from .retry import Outage, pg_errors

__all__ = ["LIVENESS_TIMEOUT_S", "WorkerHealth"]

LIVENESS_TIMEOUT_S = 15.0
"""A loop that has not beaten for this long is wedged: ``/healthz`` says so."""
_HEARTBEAT_INTERVAL_S = 1.0
_DB_PROBE_INTERVAL_S = 3.0  # PostgreSQL silent for this long (an idle worker): probe it
_DB_PROBE_TIMEOUT_S = 5.0


class WorkerHealth:
    """The heartbeat, the PostgreSQL probe and the probes' server of one worker; ``postgres`` is the worker's
    :class:`~stream_logger.retry.Outage` for PostgreSQL, which every operation against it updates too."""

    def __init__(self, postgres: Outage) -> None:
        self.postgres = postgres
        self.server: MetricsServer | None = None
        self._heartbeat = time.monotonic()
        self._postgres_answered_at = 0.0
        self._pool: asyncpg.Pool | None = None
        self._watcher: asyncio.Task[None] | None = None

    def serve(self, metrics: WorkerMetrics, port: int, host: str, ready: Callable[[], bool]) -> None:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port``; a port in use is a ConfigError."""
        server = MetricsServer(metrics, port, host, alive=self.alive, ready=ready)
        try:
            server.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        self.server = server

    def start_watching(self) -> None:
        """Start the watch task (on the running event loop)."""
        self._watcher = asyncio.create_task(self._watch(), name="stream-logger-watch")

    def probe_through(self, pool: asyncpg.Pool) -> None:
        """Probe PostgreSQL through ``pool`` from now on (once the worker is connected)."""
        self._pool = pool

    def alive(self) -> bool:
        """``/healthz``: the event loop beat recently."""
        return time.monotonic() - self._heartbeat < LIVENESS_TIMEOUT_S

    def postgres_answered(self) -> None:
        """PostgreSQL answered an operation: no probe is due for a while, and any outage is over."""
        self._postgres_answered_at = time.monotonic()
        self.postgres.answered()

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    async def stop_serving(self) -> None:
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)

    async def _watch(self) -> None:
        while True:
            self._heartbeat = time.monotonic()
            if self._pool is not None and self._heartbeat - self._postgres_answered_at >= _DB_PROBE_INTERVAL_S:
                await self._probe_postgres(self._pool)
            await asyncio.sleep(_HEARTBEAT_INTERVAL_S)

    async def _probe_postgres(self, pool: asyncpg.Pool) -> None:
        try:
            with pg_errors("probing PostgreSQL"):
                await asyncio.wait_for(pool.fetchval("SELECT 1"), _DB_PROBE_TIMEOUT_S)
        except Exception as exc:
            self.postgres.failed(exc)
        else:
            self.postgres_answered()
