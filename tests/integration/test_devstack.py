"""The dev stack itself, on a stack of its own: a temporary home and free ports chosen here, never the shared
9092/9093/55432. One start for the whole module; the tests run in file order and the last one purges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_logger.cli import main
from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.errors import DevStackError
from stream_logger.topics import create_topic
from tests.support import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    # A private folder (mode 0700): run as root, PostgreSQL's unprivileged user cannot reach it, so this stack also
    # proves the cluster then lives in a folder of its own outside the home (devstack.postgres.runtime_dir).
    home = Path(tempfile.mkdtemp(prefix="sl-devstack-"))
    kafka_port, controller_port, pg_port = free_ports(3)
    stack = DevStack(home / "h", kafka_port=kafka_port, kafka_controller_port=controller_port, pg_port=pg_port)
    try:
        stack.up()
        yield stack
    finally:
        with contextlib.suppress(DevStackError):
            stack.down(purge=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cli_args(stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--home/--kafka-port/--pg-port`` for this stack (the controller port goes through the environment)."""
    monkeypatch.setenv("STREAM_LOGGER_DEV_KAFKA_CONTROLLER_PORT", str(stack.kafka.controller_port))
    return ["--home", str(stack.home), "--kafka-port", str(stack.kafka.port), "--pg-port", str(stack.postgres.port)]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``main()`` points the root logger at the captured stderr of the test; put things back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _snapshot(stack: DevStack) -> dict[str, float]:
    files = [stack.kafka.config_file, stack.kafka.pid_file, stack.postgres.data_dir / "postmaster.pid"]
    return {str(f): f.stat().st_mtime for f in files}


def test_up_twice_changes_nothing(stack: DevStack, cli_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    before = stack.status()
    files_before = _snapshot(stack)
    assert before.all_running

    again = stack.up()

    assert [s.note for s in again.services] == ["already running", "already running"]
    assert (again.kafka.pid, again.postgres.pid) == (before.kafka.pid, before.postgres.pid)
    assert _snapshot(stack) == files_before
    assert main(["dev", "up", *cli_args]) == 0
    out = capsys.readouterr().out
    assert "already running; nothing changed" in out
    assert "dev stack up in" in out


def test_status_and_env(stack: DevStack, cli_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "status", *cli_args]) == 0
    out = capsys.readouterr().out
    assert f"kafka       running  pid {stack.kafka.pid()}" in out
    assert f"127.0.0.1:{stack.postgres.port}" in out

    assert main(["dev", "env", *cli_args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"export STREAM_LOGGER_BOOTSTRAP_SERVERS=127.0.0.1:{stack.kafka.port}",
        f"export STREAM_LOGGER_DSN=postgresql://stream_logger:stream_logger@127.0.0.1:{stack.postgres.port}/stream_logger",
    ]


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"g-{os.urandom(4).hex()}", auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            async for msg in consumer:
                assert msg.value is not None
                got.append(msg.value)
                if len(got) == count:
                    break
    finally:
        await consumer.stop()
    return got


def test_produce_consume_round_trip(stack: DevStack) -> None:
    values = [f"record {i}".encode() for i in range(20)]
    asyncio.run(_produce(stack.bootstrap_servers, "devstack-roundtrip", values))  # auto-created topic
    assert asyncio.run(_consume(stack.bootstrap_servers, "devstack-roundtrip", len(values))) == values


async def _query(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql)
        return rows
    finally:
        await conn.close()


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_query_through_asyncpg(stack: DevStack) -> None:
    rows = asyncio.run(_query(stack.dsn, "SELECT current_user AS who, current_database() AS db"))
    assert (rows[0]["who"], rows[0]["db"]) == ("stream_logger", "stream_logger")
    asyncio.run(_execute(stack.dsn, "CREATE TABLE kept (note text); INSERT INTO kept VALUES ('survives a restart')"))


def test_down_then_up_keeps_the_data(stack: DevStack, cli_args: list[str]) -> None:
    asyncio.run(_produce(stack.bootstrap_servers, "devstack-kept", [b"still here"]))

    down = stack.down()
    assert [s.note for s in down.services] == ["stopped", "stopped"]
    assert not stack.status().kafka.running and not stack.status().postgres.running
    assert main(["dev", "status", *cli_args]) != 0

    up = stack.up()
    assert [s.note for s in up.services] == ["started", "started"]
    rows = asyncio.run(_query(stack.dsn, "SELECT note FROM kept"))
    assert [r["note"] for r in rows] == ["survives a restart"]
    assert asyncio.run(_consume(stack.bootstrap_servers, "devstack-kept", 1)) == [b"still here"]


@pytest.mark.parametrize("which", ["kafka", "postgresql"])
def test_a_port_taken_by_something_else_is_a_clear_error(stack: DevStack, tmp_path: Path, which: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        free_kafka, free_controller, free_pg = free_ports(3)
        other = DevStack(
            tmp_path / "other",
            kafka_port=taken if which == "kafka" else free_kafka,
            kafka_controller_port=free_controller,
            pg_port=taken if which == "postgresql" else free_pg,
        )
        with pytest.raises(DevStackError, match=f"port 127.0.0.1:{taken} .*not this dev stack"):
            other.up()
    assert not other.status().kafka.running and not other.status().postgres.running
    assert not (tmp_path / "other" / "kafka").exists() and not other.postgres.dir.exists()


def test_another_home_on_the_same_ports_is_refused(stack: DevStack, tmp_path: Path) -> None:
    intruder = DevStack(
        tmp_path / "intruder",
        kafka_port=stack.kafka.port,
        kafka_controller_port=stack.kafka.controller_port,
        pg_port=stack.postgres.port,
    )
    with pytest.raises(DevStackError, match="not this dev stack"):
        intruder.up()
    assert stack.status().all_running


def test_secure_on_a_home_formatted_without_it(stack: DevStack) -> None:
    (secure_port,) = free_ports(1)
    secure = DevStack(
        stack.home,
        kafka_port=stack.kafka.port,
        kafka_controller_port=stack.kafka.controller_port,
        pg_port=stack.postgres.port,
        kafka_secure_port=secure_port,
    )
    with pytest.raises(DevStackError, match=r"runs without the secured listener.*dev down"):
        secure.up()  # the broker runs, started without --secure

    stack.down()
    secure.up()  # the storage was formatted without SCRAM credentials: the user is added to it

    user, password = secure.kafka.secure.credentials()
    settings = Settings.from_env(
        {
            "STREAM_LOGGER_BOOTSTRAP_SERVERS": secure.kafka.secure_address,
            "STREAM_LOGGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAM_LOGGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "STREAM_LOGGER_KAFKA_SASL_USERNAME": user,
            "STREAM_LOGGER_KAFKA_SASL_PASSWORD": password,
            "STREAM_LOGGER_KAFKA_SSL_CA_LOCATION": str(secure.kafka.secure.ca.cert),
        }
    )
    asyncio.run(create_topic(settings, "devstack-secure", partitions=1))
    assert secure.kafka.status().running


def test_down_purge_deletes_the_data(stack: DevStack, cli_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "down", "--purge", *cli_args]) == 0
    assert "data deleted" in capsys.readouterr().out
    assert not (stack.home / "kafka").exists()
    assert not stack.postgres.dir.exists()
    assert not stack.status().all_running
