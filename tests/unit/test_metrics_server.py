"""The metrics and probes server: exact paths, GET and HEAD only, oversized requests refused, nothing raised."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from stream_logger.metrics import MetricsServer, WorkerMetrics


@pytest.fixture
def state() -> dict[str, bool]:
    return {"alive": True, "ready": False}


@pytest.fixture
def server(state: dict[str, bool]) -> Iterator[MetricsServer]:
    metrics = WorkerMetrics()
    metrics.written_rows.inc(7)
    with MetricsServer(metrics, 0, "127.0.0.1", alive=lambda: state["alive"], ready=lambda: state["ready"]) as server:
        yield server


def request(
    server: MetricsServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_metrics_healthz_and_readyz(server: MetricsServer, state: dict[str, bool]) -> None:
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"stream_logger_rows_written_total 7.0" in body
    assert request(server, "GET", "/healthz")[0] == 200
    assert request(server, "GET", "/readyz")[0] == 503
    state["ready"] = True
    assert request(server, "GET", "/readyz")[0] == 200
    state["alive"] = False
    assert request(server, "GET", "/healthz")[0] == 503


@pytest.mark.parametrize("path", ["/metricsX", "/healthz/", "/readyzz", "/", "/favicon.ico"])
def test_only_exact_paths(server: MetricsServer, path: str) -> None:
    assert request(server, "GET", path)[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_only_get_and_head(server: MetricsServer, method: str) -> None:
    status, headers, _ = request(server, method, "/metrics")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_head_has_no_body(server: MetricsServer) -> None:
    status, _, body = request(server, "HEAD", "/healthz")
    assert status == 200 and body == b""


def test_an_oversized_header_is_refused_and_the_server_keeps_serving(server: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        reply = sock.recv(200)
    assert reply.startswith(b"HTTP/1.0 431") or reply.startswith(b"HTTP/1.1 431"), reply
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        reply = sock.recv(200)
    assert b" 414 " in reply.split(b"\r\n")[0], reply
    assert request(server, "GET", "/healthz")[0] == 200


def test_stop_twice_and_the_port_is_released(state: dict[str, bool]) -> None:
    server = MetricsServer(WorkerMetrics(), 0, "127.0.0.1")
    server.start()
    port = server.port
    server.stop()
    server.stop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again
