"""The worker in operation: signals during start-up and outages, health and readiness probes, condensed logs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.topics import create_topic, delete_topic
from stream_logger.worker import Worker
from tests.support import TcpProxy, config, free_ports, produce_records, spawn_worker, unique_name, wait_for_rows

pytestmark = pytest.mark.integration


def http_status(url: str) -> tuple[int | None, str]:
    """(status, body) of a GET, or (None, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return None, str(exc)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.2)


async def probe(port: int, path: str) -> int | None:
    status, _ = await asyncio.to_thread(http_status, f"http://127.0.0.1:{port}{path}")
    return status


def spawn_logging_worker(log_file: Path, topic: str, schema: str, *extra: str) -> subprocess.Popen[bytes]:
    """A ``stream-logger consume`` process whose log goes to ``log_file`` (a pipe could fill up and block it)."""
    with log_file.open("wb") as err:
        return spawn_worker(topic, schema, *extra, stderr=err)


def finish(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM the worker and return its exit code; a worker that does not exit in time is killed (and fails)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        raise AssertionError(f"the worker did not exit within {timeout_s:.0f}s of SIGTERM") from None


@pytest.mark.parametrize("down", ["postgresql", "kafka"])
async def test_probes_answer_and_sigterm_stops_promptly_while_a_service_is_down_at_start(
    settings: Settings, topic: str, datamart_schema: str, tmp_path: Path, down: str
) -> None:
    closed_port, metrics_port = free_ports(2)
    dsn = urlsplit(settings.dsn)
    where = (
        ["--dsn", settings.dsn.replace(f":{dsn.port}/", f":{closed_port}/")]
        if down == "postgresql"
        else ["--bootstrap-servers", f"127.0.0.1:{closed_port}"]
    )
    log_file = tmp_path / "worker.log"
    proc = spawn_logging_worker(
        log_file, topic, datamart_schema, "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1", *where
    )
    try:

        async def retried() -> bool:
            status, body = await asyncio.to_thread(http_status, f"http://127.0.0.1:{metrics_port}/metrics")
            counted = [
                line
                for line in body.splitlines()
                if line.startswith(f'stream_logger_retries_total{{service="{down}"}}')
            ]
            return status == 200 and bool(counted) and float(counted[0].split()[-1]) >= 2

        await eventually(retried, 30, f"start-up retries of {down} counted in /metrics")
        assert await probe(metrics_port, "/healthz") == 200  # alive while it waits
        assert await probe(metrics_port, "/readyz") == 503  # but not ready
    finally:
        code = finish(proc, 15)
    log = log_file.read_text()
    assert code == 0, log[-3000:]
    assert "worker started" not in log and "assigned" not in log  # it never joined the group
    assert "Traceback" not in log


async def test_sigterm_while_the_broker_is_down_exits_zero(
    settings: Settings, private_broker: DevStack, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    private = Settings(private_broker.bootstrap_servers, settings.dsn)
    topic = unique_name("t")
    await create_topic(private.bootstrap_servers, topic, partitions=3)
    await produce_records(private, topic, 0, 300)
    log_file = tmp_path / "worker.log"
    proc = spawn_logging_worker(
        log_file, topic, datamart_schema, "--bootstrap-servers", private.bootstrap_servers, "--shutdown-grace-s", "10"
    )
    try:
        await wait_for_rows(pg, datamart_schema, 300)
        await asyncio.to_thread(private_broker.kafka.stop)
        await asyncio.sleep(5)  # the worker now fails to reach the broker, over and over
    finally:
        code = finish(proc, 30)
    log = log_file.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "CancelledError" not in log


async def test_readiness_follows_the_database_on_an_idle_worker(
    settings: Settings, topic: str, datamart_schema: str
) -> None:
    dsn = urlsplit(settings.dsn)
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.start()
    proxied = Settings(settings.bootstrap_servers, settings.dsn.replace(f":{dsn.port}/", f":{proxy.port}/"))
    cfg = config(topic, datamart_schema, until_caught_up=False, metrics_port=0)
    try:
        async with Worker(cfg, proxied) as worker:
            run = asyncio.create_task(worker.run())
            port = worker.metrics_port
            assert port is not None

            def status_is(code: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return await probe(port, "/readyz") == code

                return check

            # no record was ever produced: ready once it holds its partitions, without waiting for a batch
            await eventually(status_is(200), 30, "ready with its partitions and no batch")
            await proxy.cut()
            await eventually(status_is(503), 20, "not ready while PostgreSQL is unreachable")
            assert await probe(port, "/healthz") == 200  # alive all the same: a restart would not help
            await proxy.restore()
            await eventually(status_is(200), 30, "ready again once PostgreSQL answers")
            worker.request_stop()
            await asyncio.wait_for(run, 30)
    finally:
        await proxy.stop()


async def test_a_database_outage_is_logged_once_not_per_retry(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    dsn = urlsplit(settings.dsn)
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.start()
    log_file = tmp_path / "worker.log"
    proc = spawn_logging_worker(
        log_file, topic, datamart_schema, "--dsn", settings.dsn.replace(f":{dsn.port}/", f":{proxy.port}/")
    )
    try:
        await produce_records(settings, topic, 0, 200)
        await wait_for_rows(pg, datamart_schema, 200)
        await proxy.cut()
        await produce_records(settings, topic, 200, 200)
        await asyncio.sleep(12)  # a dozen retries at least
        await proxy.restore()
        await wait_for_rows(pg, datamart_schema, 400)
    finally:
        code = finish(proc, 30)
        await proxy.stop()
    log = log_file.read_text()
    assert code == 0, log[-3000:]
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, "\n".join(warnings[:20])
    assert "PostgreSQL unavailable" in warnings[0]
    assert "Traceback" not in log
    recovered = [line for line in log.splitlines() if "PostgreSQL available again after" in line]
    assert len(recovered) == 1 and " INFO " in recovered[0], log[-3000:]


@pytest.fixture
async def future_topic(settings: Settings) -> AsyncIterator[str]:
    """A topic name that does not exist yet (the test creates it), deleted afterwards."""
    name = unique_name("t")
    yield name
    await delete_topic(settings.bootstrap_servers, name)


async def test_a_topic_created_after_the_worker_started_is_picked_up_in_seconds(
    settings: Settings, future_topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    cfg = config(future_topic, datamart_schema, until_caught_up=False)
    async with Worker(cfg, settings) as worker:
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(3)  # subscribed to a topic that is not there
        await create_topic(settings.bootstrap_servers, future_topic, partitions=3)
        await produce_records(settings, future_topic, 0, 30)
        await wait_for_rows(pg, datamart_schema, 30, timeout_s=40)
        worker.request_stop()
        await asyncio.wait_for(run, 30)
