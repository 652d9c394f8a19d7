"""Real web servers with two worker processes, driven over HTTP on loopback, against a real broker.

uvicorn ``--workers 2`` serves the example FastAPI/Starlette service (an ``Emitter`` a worker, started in the
lifespan hook); gunicorn ``-w 2`` serves a WSGI app with a ``ThreadedEmitter`` made at import, with and without
``--preload`` (made in the master, then forked). Every ``scoring_id`` a client got back must reach the datamart
exactly once, also through a broker outage during which one worker is SIGKILLed and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.samples import german_credit_record
from stream_logger.topics import create_topic
from tests.support import config, free_ports, payload_table, run_until_caught_up, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("uvicorn", "gunicorn", "gunicorn-preload")
_WORKERS = 2


class Server:
    """A server process with two workers on a free loopback port, its log in a file."""

    def __init__(self, kind: str, topic: str, bootstrap_servers: str, home: Path) -> None:
        (self.port,) = free_ports(1)
        self.subscription = "german-credit" if kind == "uvicorn" else "gc"
        self.slots = home / "state" / "spool" / topic
        if kind == "uvicorn":
            argv = ["uvicorn", "--workers", str(_WORKERS), "--host", "127.0.0.1", "--port", str(self.port)]
            argv += ["--app-dir", str(ROOT / "examples" / "fastapi_service"), "app:app"]
        else:
            argv = ["gunicorn", "-w", str(_WORKERS), "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "30"]
            argv += ["--chdir", str(ROOT / "tests" / "integration"), "wsgi_app:app"]
            if kind == "gunicorn-preload":
                argv.append("--preload")
        env = {
            **os.environ,
            "STREAM_LOGGER_TOPIC": topic,
            "STREAM_LOGGER_BOOTSTRAP_SERVERS": bootstrap_servers,
            "STREAM_LOGGER_STATE_DIR": str(home / "state"),  # the default spool, as a service would have it
        }
        self.log_file = home / f"{kind}.log"
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *argv], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.wait_for_workers()

    def workers(self) -> list[int]:
        """The pids of the server's worker processes (uvicorn's spawn also starts a resource tracker: not one)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        pids = []
        for pid in map(int, children):
            with contextlib.suppress(FileNotFoundError):
                if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(pid)
        return pids

    def wait_for_workers(self, gone: int | None = None, timeout_s: float = 60) -> None:
        """Until two workers run (worker ``gone`` not among them) and the server answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            with contextlib.suppress(httpx.HTTPError):
                workers = self.workers()
                if len(workers) == _WORKERS and gone not in workers and self.client.get("/logging-stats").is_success:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the server did not start two workers:\n{self.log()}")

    def score(self, first: int, n: int) -> list[str]:
        """``n`` scoring calls over HTTP, each on a new connection (so both workers take some); their ids."""
        ids = []
        for i in range(first, first + n):
            answer = self.client.post("/score", json=german_credit_record(i, rows=1)["request"])
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["scoring_id"])
        assert all(ids)
        return ids

    def stats_of(self, pid: int, timeout_s: float = 60) -> dict[str, int]:
        """The emitter stats of worker ``pid`` (asked until that worker is the one that answers)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stats: dict[str, int] = self.client.get("/logging-stats").json()
            if stats["pid"] == pid:
                return stats
        raise AssertionError(f"worker {pid} never answered")

    def stop(self) -> None:
        """SIGTERM: the graceful stop, where each worker's emitter delivers what it holds."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"the server did not stop on SIGTERM:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def running(kind: str, topic: str, bootstrap_servers: str, home: Path) -> Iterator[Server]:
    server = Server(kind, topic, bootstrap_servers, home)
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        for pid in server.workers() if server.proc.poll() is None else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if server.proc.poll() is None:
            server.proc.kill()


async def assert_each_once_in_the_datamart(
    settings: Settings, topic: str, schema: str, pg: asyncpg.Connection, server: Server, ids: list[str]
) -> None:
    await run_until_caught_up(settings, config(topic, schema))
    table = await payload_table(pg, schema, server.subscription)
    rows = await pg.fetch(f"SELECT scoring_id, count(*) AS n FROM {table} GROUP BY scoring_id")
    stored = {r["scoring_id"]: r["n"] for r in rows}
    assert len(ids) == len(set(ids))
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} of {len(ids)} ids missing\n{server.log()}"
    assert set(stored) == set(ids) and set(stored.values()) == {1}


@pytest.mark.parametrize("kind", SERVERS)
async def test_two_workers_log_every_call_once(
    kind: str, settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    with running(kind, topic, settings.bootstrap_servers, tmp_path) as server:
        ids = server.score(0, 60)
        for pid in server.workers():
            assert server.stats_of(pid)["invalid"] == 0
        server.stop()
        assert server.proc.returncode == 0, server.log()
    assert {p.name for p in server.slots.glob("slot-*")} >= {"slot-0", "slot-1"}  # a slot each, both alive at once
    assert "Traceback" not in server.log(), server.log()
    await assert_each_once_in_the_datamart(settings, topic, datamart_schema, pg, server, ids)


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_broker_outage_with_a_worker_killed_and_replaced_loses_nothing(
    kind: str,
    settings: Settings,
    private_broker: DevStack,
    datamart_schema: str,
    pg: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    private = Settings(private_broker.bootstrap_servers, settings.dsn)
    topic = unique_name("t")
    await create_topic(private.bootstrap_servers, topic, partitions=3)
    with running(kind, topic, private.bootstrap_servers, tmp_path) as server:
        ids = server.score(0, 20)
        private_broker.kafka.stop()
        ids += server.score(20, 30)
        # A worker killed outright loses what it holds in memory (documented); so it goes once all is spooled.
        deadline = time.monotonic() + 90
        while any((stats := server.stats_of(pid))["queued"] for pid in server.workers()):
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.5)
        victim = max(server.workers(), key=lambda pid: server.stats_of(pid)["spool_records"])
        assert server.stats_of(victim)["spool_records"] > 0  # its records wait on disk, for another process
        os.kill(victim, signal.SIGKILL)
        server.wait_for_workers(gone=victim)  # the server replaced it
        ids += server.score(50, 30)
        private_broker.kafka.wait_ready(private_broker.kafka.start())
        ids += server.score(80, 20)
        server.stop()
        assert server.proc.returncode == 0, server.log()
    await assert_each_once_in_the_datamart(private, topic, datamart_schema, pg, server, ids)
    leftover = [p for p in server.slots.rglob("*.spool") if p.stat().st_size]
    assert not leftover, leftover
