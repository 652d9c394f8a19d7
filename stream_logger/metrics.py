"""Worker metrics in the Prometheus format, and the HTTP endpoints that serve them.

``GET /metrics`` (Prometheus text format), ``GET /healthz`` (200 while the worker's loop runs) and ``GET /readyz``
(200 once the worker is in its group and its last database write did not fail; 503 otherwise). Each worker has its
own registry, so several workers (or tests) in one process never share counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["MetricsServer", "WorkerMetrics"]

log = logging.getLogger(__name__)


class WorkerMetrics:
    """The counters and gauges a worker updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter("stream_logger_records_consumed", "Kafka messages read", registry=r)
        self.written_rows = Counter("stream_logger_rows_written", "Payload rows committed to the datamart", registry=r)
        self.records_committed = Counter(
            "stream_logger_records_committed", "Messages whose batch committed (rows or dead letters)", registry=r
        )
        self.duplicates = Counter(
            "stream_logger_duplicate_rows_skipped", "Rows already present (re-delivered records)", registry=r
        )
        self.dead_letters = Counter(
            "stream_logger_dead_letters", "Messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.batch_records = Histogram(
            "stream_logger_batch_records",
            "Messages per written batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000),
            registry=r,
        )
        self.write_seconds = Histogram(
            "stream_logger_batch_write_seconds",
            "Time to write and commit one batch, retries included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.retries = Counter("stream_logger_retries", "Retried operations, by service", ["service"], registry=r)
        self.fenced = Counter(
            "stream_logger_fenced_batches", "Batches dropped because another worker moved the offset", registry=r
        )
        self.paused_partitions = Gauge(
            "stream_logger_paused_partitions", "Partitions paused by backpressure", registry=r
        )
        self.assigned_partitions = Gauge("stream_logger_assigned_partitions", "Partitions assigned", registry=r)
        self.lag = Gauge(
            "stream_logger_partition_lag",
            "Messages in the partition not yet committed to the datamart",
            ["topic", "partition"],
            registry=r,
        )
        self.in_flight_batches = Gauge(
            "stream_logger_in_flight_batches", "Batches prepared or being written", registry=r
        )

    def render(self) -> bytes:
        body: bytes = generate_latest(self.registry)
        return body


class MetricsServer:
    """A minimal HTTP/1.1 server for ``/metrics``, ``/healthz`` and ``/readyz`` on the worker's event loop."""

    def __init__(self, metrics: WorkerMetrics, port: int, host: str = "0.0.0.0") -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.ready = False

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self._host, self._port)
            log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path.startswith("/metrics"):
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, self._metrics.render()
            elif path.startswith("/healthz"):
                status, ctype, body = "200 OK", "text/plain", b"ok\n"
            elif path.startswith("/readyz"):
                ok = self.ready
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "text/plain", b"ready\n" if ok else b"not ready\n"
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
