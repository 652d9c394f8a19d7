"""Worker metrics in the Prometheus format, and the HTTP endpoints that serve them.

``GET /metrics`` (Prometheus text format, served by prometheus-client), ``GET /healthz`` (liveness) and
``GET /readyz`` (readiness); what the last two mean is the worker's to say (see ``Worker.alive``/``Worker.ready``).
Each worker has its own registry, so several workers (or tests) in one process never share counters.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, make_wsgi_app

__all__ = ["MetricsServer", "MonitorMetrics", "WorkerMetrics"]

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
        self.ready = Gauge("stream_logger_ready", "1 while /readyz answers 200, else 0", registry=r)

    def render(self) -> bytes:
        body: bytes = generate_latest(self.registry)
        return body


class MonitorMetrics:
    """The latest measurement of each monitor's metric, as gauges for alert rules: ``stream_logger_monitor_value``
    (NaN for a metric without a value) and ``stream_logger_monitor_breached`` (1 or 0), labelled by subscription,
    monitor and metric."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["subscription", "monitor", "metric"]
        self.value = Gauge("stream_logger_monitor_value", "A metric's latest value", labels, registry=self.registry)
        self.breached = Gauge(
            "stream_logger_monitor_breached", "1 when a metric's latest value is outside its threshold", labels,
            registry=self.registry,
        )  # fmt: skip

    def update(self, measurements: Iterable[Any]) -> None:
        """Set the gauges from measurements (``subscription_id``, ``monitor``, ``metric``, ``value``, ``breached``)."""
        for m in measurements:
            labels = (m.subscription_id, m.monitor, m.metric)
            self.value.labels(*labels).set(float("nan") if m.value is None else m.value)
            self.breached.labels(*labels).set(1 if m.breached else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a probe every few seconds is not worth a log line


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, from a thread of its own (so probes answer even while
    the worker's loop waits for a database at start-up).

    Exact paths only (anything else is 404), ``GET`` and ``HEAD`` only (anything else is 405 with ``Allow``).
    Requests are parsed by the standard library's ``http.server``: a request line or header over its limits is
    answered 414/431, never raised. ``alive`` and ``ready`` are called from the server's threads.
    """

    def __init__(
        self,
        metrics: WorkerMetrics | MonitorMetrics,
        port: int,
        host: str = "0.0.0.0",
        *,
        alive: Callable[[], bool] = lambda: True,
        ready: Callable[[], bool] = lambda: False,
    ) -> None:
        self._host = host
        self._port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        prometheus = make_wsgi_app(metrics.registry)
        self._routes: dict[str, Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]] = {
            "/metrics": prometheus,
            "/healthz": self._probe(alive, "ok", "not alive"),
            "/readyz": self._probe(ready, "ready", "not ready"),
        }

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> None:
        """Bind and serve from a daemon thread (an error at once if the port is taken)."""
        if self._server is not None:
            return
        self._server = make_server(
            self._host, self._port, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="stream-logger-metrics", daemon=True)
        self._thread.start()
        log.info("metrics and probes on http://%s:%d/ (/metrics, /healthz, /readyz)", self._host, self.port)

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call twice. Blocks up to the server's poll interval."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "")
        if route is None:
            return _plain(start_response, "404 Not Found", b"not found\n")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"method not allowed\n", [("Allow", "GET, HEAD")])
        body = route(environ, start_response)
        return [] if method == "HEAD" else body

    @staticmethod
    def _probe(check: Callable[[], bool], yes: str, no: str) -> Callable[[WSGIEnvironment, StartResponse], list[bytes]]:
        def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
            try:
                ok = check()
            except Exception:  # a probe that cannot tell says no
                log.debug("probe check failed", exc_info=True)
                ok = False
            if ok:
                return _plain(start_response, "200 OK", f"{yes}\n".encode())
            return _plain(start_response, "503 Service Unavailable", f"{no}\n".encode())

        return app


def _plain(
    start_response: StartResponse, status: str, body: bytes, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *(headers or [])]
    )
    return [body]
