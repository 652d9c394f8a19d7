"""Helpers for integration tests: producing messages, and a TCP proxy that can cut a service off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from stream_logger import datamart
from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from stream_logger.registry import create_partitions, declare
from stream_logger.samples import german_credit_record
from stream_logger.subscription import Subscription


async def produce(
    settings: Settings, topic: str, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None
) -> None:
    """Send messages and wait until every one is acknowledged."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(acks="all", linger_ms=5))
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=v, key=keys[i] if keys is not None else None) for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def setup_datamart(settings: Settings, schema: str) -> None:
    conn = await asyncpg.connect(settings.dsn)
    try:
        await datamart.setup(conn, schema)
    finally:
        await conn.close()


async def count_rows(settings: Settings, schema: str, table: str) -> int:
    conn = await asyncpg.connect(settings.dsn)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}")
        return n
    finally:
        await conn.close()


def scoring_call(i: int, scoring_id: str, scoring_timestamp: datetime) -> dict[str, Any]:
    """The keywords of one ``Emitter.log()`` call: the ``i``-th German-credit sample, under the given id and time."""
    r = german_credit_record(i)
    return {
        "request": r["request"],
        "response": r["response"],
        "subscription_id": r["subscription_id"],
        "scoring_id": scoring_id,
        "scoring_timestamp": scoring_timestamp,
    }


SHARED_PORTS = {9092, 9093, 55432}  # the dev stack's: never handed out, even if free for a moment


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (bound and released at once): for private services, or to be refused."""
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in SHARED_PORTS:
                sock.close()
                continue
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close the listening socket and every open connection, as a crashed server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._pipes):
            t.cancel()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.transport.abort()
            self._writers.discard(dst)


async def partitioned_datamart(
    conn: asyncpg.Connection, schema: str, *, subscriptions: int = 3, days: int = 150, rows: int = 10
) -> None:
    """A datamart with ``subscriptions`` subscriptions (``m0``, ``m1``, ...) of ``days`` day partitions each, from
    2024-01-01; ``rows`` rows on the first day of ``m0``, analyzed so that PostgreSQL's estimate knows them."""
    await datamart.setup(conn, schema)
    first_day = date(2024, 1, 1)
    declared: list[Subscription] = []
    for i in range(subscriptions):
        fields = [{"name": "x", "type": "integer"}, {"name": "note", "type": "text"}]
        declared.append(await declare(conn, schema, {"subscription_id": f"m{i}", "fields": fields}))
        await create_partitions(conn, declared[-1], [first_day + timedelta(days=d) for d in range(days)])
    q_table = f"{quote_ident(schema)}.{quote_ident(declared[0].table)}"
    await conn.execute(
        f"INSERT INTO {q_table} (scoring_id, row_index, scoring_timestamp) "
        "SELECT g::text, 0, '2024-01-01 12:00:00+00' FROM generate_series(1, $1::int) AS g",
        rows,
    )
    await conn.execute(f"ANALYZE {q_table}")


DECODER_CORPUS = Path(__file__).resolve().parent / "corpus" / "decoder"


def decoder_corpus() -> dict[str, tuple[bytes, str]]:
    """The checked-in hostile messages (``tests/corpus/decoder``): name -> (message value, expected outcome of
    ``records.decode``: ``"ok"`` or a dead-letter code)."""
    expected: dict[str, str] = json.loads((DECODER_CORPUS / "expected.json").read_text(encoding="utf-8"))
    messages = DECODER_CORPUS / "messages"
    return {name: ((messages / f"{name}.json").read_bytes(), code) for name, code in expected.items()}
