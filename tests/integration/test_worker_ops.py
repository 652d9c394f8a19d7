"""The worker in operation: signals during start-up and outages, health and readiness probes, condensed logs."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.topics import create_topic, delete_topic
from stream_logger.worker import Worker
from tests.integration.conftest import unique_name
from tests.integration.test_worker import (
    config,
    datamart_schema,
    produce_records,
    spawn_worker,
    wait_for_rows,
)
from tests.support import free_ports

pytestmark = pytest.mark.integration

__all__ = ["datamart_schema"]  # a fixture, imported for the tests below


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


@pytest.fixture
def private_broker() -> Iterator[DevStack]:
    """A broker of its own (the shared one is never stopped), on free ports, with a fresh home."""
    home = Path(tempfile.mkdtemp(prefix="sl-broker-"))
    kafka_port, controller_port, pg_port = free_ports(3)
    stack = DevStack(home / "h", kafka_port=kafka_port, kafka_controller_port=controller_port, pg_port=pg_port)
    try:
        stack.kafka.wait_ready(stack.kafka.start())
        yield stack
    finally:
        stack.kafka.stop()
        shutil.rmtree(home, ignore_errors=True)


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
