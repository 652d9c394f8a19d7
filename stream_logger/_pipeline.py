"""The emitter's engine: a bounded memory buffer, the overflow policy, the disk spool and the Kafka sender.

Encoded records enter through :meth:`Pipeline.submit` from any thread; it never waits on the network. A sender
task on the pipeline's event loop drains the buffer into per-partition batches (``send_batch``) and counts the
acknowledgements. Memory is counted from ``submit`` until the broker acknowledges (or the record leaves for the
spool), so pending records never take more than ``max_buffer_bytes``.

Order: while anything waits in the spool, new records go to the spool too, behind it; the spool is replayed oldest
first before the memory path opens again. A batch that fails in flight is spilled behind newer records: order is
kept except across a failure. Keys are unique scoring ids, so order matters only for reading comfort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaProducer

from .spool import Spool

__all__ = ["RECORD_OVERHEAD_BYTES", "EmitterStats", "Overflow", "Pipeline", "PipelineConfig"]

log = logging.getLogger("stream_logger.emitter")

Overflow = Literal["spill", "drop", "block"]
RECORD_OVERHEAD_BYTES = 100
"""Bytes counted per pending record on top of its key and value (tuple, bytes headers, deque slot)."""
_DROP_WARNING_INTERVAL_S = 10.0
_FSYNC_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """What happened to the records given to an emitter (counts since it started; ``queued`` and ``spool_*`` now).

    Every record logged ends up counted once in ``acknowledged``, ``dropped`` or ``invalid``, or is still
    ``queued`` (memory) or in the spool. ``failed`` counts delivery attempts the broker did not acknowledge; those
    records were then spilled (counted again in ``spilled``) or dropped.
    """

    queued: int
    sent: int
    acknowledged: int
    failed: int
    dropped: int
    spilled: int
    invalid: int
    spool_records: int
    spool_bytes: int
    torn: int


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    topic: str
    bootstrap_servers: str
    compression: str | None
    linger_ms: float
    max_batch_bytes: int
    max_buffer_bytes: int
    overflow: Overflow
    block_fallback: Literal["spill", "drop"]
    spool_dir: Path | None
    max_spool_bytes: int
    delivery_timeout_s: float
    close_timeout_s: float


@dataclass(slots=True)
class _Counts:
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    dropped: int = 0
    spilled: int = 0
    invalid: int = 0


class Pipeline:
    """Buffer, spool and sender for one topic. ``submit`` is thread-safe; the rest runs on one event loop."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._buf: deque[tuple[bytes, bytes]] = deque()
        self._buf_bytes = 0  # memory held by queued and in-flight records
        self._unsent_bytes = 0  # of which not yet handed to the producer
        self._inflight: dict[int, tuple[asyncio.Future[Any], list[tuple[bytes, bytes]], bool]] = {}
        self._queued = 0  # records in memory, queued or in flight
        self._counts = _Counts()
        self._spool: Spool | None = None
        needs_spool = config.overflow == "spill" or (config.overflow == "block" and config.block_fallback == "spill")
        if needs_spool and config.spool_dir is not None:
            self._spool = Spool(
                config.spool_dir,
                max_bytes=config.max_spool_bytes,
                segment_bytes=max(64 << 10, min(4 << 20, config.max_buffer_bytes // 4)),
            )
        self._spooling = False  # records wait in the spool: new ones queue behind them
        self._broker_up = True  # optimistic until a connection or a delivery fails
        self._sender_waiting = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._producer: AIOKafkaProducer | None = None
        self._partitions: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._last_drop_warning = 0.0
        self._drops_unreported = 0

    # ---- any thread -------------------------------------------------------------------------------------------

    def count_invalid(self) -> None:
        with self._lock:
            self._counts.invalid += 1

    def submit(self, key: bytes, value: bytes, block_timeout_s: float | None = None) -> None:
        """Queue one encoded record, or apply the overflow policy; waits only when ``block_timeout_s`` is given."""
        size = len(key) + len(value) + RECORD_OVERHEAD_BYTES
        wake = False
        with self._lock:
            if not self._memory_path_open(size) and block_timeout_s is not None and not self._stopping:
                self._room.wait_for(lambda: self._memory_path_open(size) or self._stopping, block_timeout_s)
            if self._memory_path_open(size):
                self._buf.append((key, value))
                self._buf_bytes += size
                self._unsent_bytes += size
                self._queued += 1
                if self._sender_waiting:
                    self._sender_waiting = False
                    wake = True
            else:
                self._overflow_locked(key, value)
        if wake:
            self._wake_sender()

    def stats(self) -> EmitterStats:
        with self._lock:
            c = self._counts
            return EmitterStats(
                queued=self._queued,
                sent=c.sent,
                acknowledged=c.acknowledged,
                failed=c.failed,
                dropped=c.dropped,
                spilled=c.spilled,
                invalid=c.invalid,
                spool_records=self._spool.records if self._spool else 0,
                spool_bytes=self._spool.bytes if self._spool else 0,
                torn=self._spool.torn if self._spool else 0,
            )

    def _memory_path_open(self, size: int) -> bool:
        return (
            not self._spooling
            and (self._broker_up or self._spool is None)
            and self._buf_bytes + size <= self.config.max_buffer_bytes
        )

    def _overflow_locked(self, key: bytes, value: bytes) -> None:
        policy = self.config.overflow if self.config.overflow != "block" else self.config.block_fallback
        if policy == "spill" and self._spool is not None:
            if self._spool.append(key, value):
                self._counts.spilled += 1
                self._spooling = True
                return
            self._note_drop_locked("the spool is full")
            return
        self._note_drop_locked("the memory buffer is full")

    def _note_drop_locked(self, reason: str) -> None:
        self._counts.dropped += 1
        self._drops_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL_S:
            log.warning(
                "topic %s: dropped %d record(s) since the last warning: %s (%d dropped in all)",
                self.config.topic,
                self._drops_unreported,
                reason,
                self._counts.dropped,
            )
            self._last_drop_warning = now
            self._drops_unreported = 0

    def _wake_sender(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: stop() already drained
                loop.call_soon_threadsafe(self._wake.set)

    # ---- the event loop ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool and start the sender task (the broker need not be reachable)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        if self._spool is not None:
            self._spool.open()
            with self._lock:
                self._spooling = self._spool.has_pending
        self._task = asyncio.create_task(self._run(), name=f"stream-logger-emitter:{self.config.topic}")

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every record in memory is acknowledged, and the spool is empty while the broker is up.

        Returns ``False`` if that did not happen within ``timeout_s`` (the records are not lost: they stay queued).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._lock:
                done = self._queued == 0 and (not self._spooling or not self._broker_up)
                if not done and self._sender_waiting:
                    self._sender_waiting = False
                    self._wake.set()
            if done:
                return True
            if self._task is None or self._task.done():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Deliver what can be delivered within ``close_timeout_s``, spill the rest, close everything."""
        if self._task is None:
            return
        with self._lock:
            self._stopping = True
            self._room.notify_all()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.config.close_timeout_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        await self._close_producer()
        with self._lock:
            # Batches the broker never answered: spill them (a duplicate is possible only if an ack was lost).
            for future, batch, from_memory in list(self._inflight.values()):
                if not future.done() and from_memory:
                    self._queued -= len(batch)
                    self._buf_bytes -= _bytes(batch)
                    for key, value in batch:
                        self._overflow_locked(key, value)
            self._inflight.clear()
            self._spill_memory_locked("the emitter stopped before the broker acknowledged")
            if self._spool is not None:
                self._spool.close()
        stats = self.stats()
        if stats.spool_records:
            log.warning(
                "topic %s: %d record(s) left in the spool %s; an emitter started on it later sends them",
                self.config.topic,
                stats.spool_records,
                self.config.spool_dir,
            )

    async def _run(self) -> None:
        backoff_s = 0.2
        last_sync = time.monotonic()
        while True:
            if self._producer is None and not await self._connect():
                if self._stopping:
                    return
                await self._sleep_or_wake(backoff_s * random.uniform(0.5, 1.5))
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if self._spool is not None and time.monotonic() - last_sync >= _FSYNC_INTERVAL_S:
                with self._lock:
                    self._spool.sync()
                last_sync = time.monotonic()
            with self._lock:
                have_memory = bool(self._buf)
                have_spool = self._spooling
                if not have_memory and not have_spool:
                    if self._stopping:
                        return
                    self._sender_waiting = True
                    self._wake.clear()
            if have_memory:
                if (
                    self.config.linger_ms > 0
                    and not self._stopping
                    and self._unsent_bytes < self.config.max_batch_bytes
                ):
                    await asyncio.sleep(self.config.linger_ms / 1000)
                await self._send_memory()
            elif have_spool:
                if await self._replay_spool():
                    backoff_s = 0.2
                elif self._stopping:
                    return
                else:
                    await self._sleep_or_wake(backoff_s * random.uniform(0.5, 1.5))
                    backoff_s = min(backoff_s * 2, 5.0)
            else:
                await self._sleep_or_wake(_FSYNC_INTERVAL_S)

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _connect(self) -> bool:
        cfg = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap_servers,
            client_id="stream-logger-emitter",
            acks="all",
            enable_idempotence=True,
            compression_type=cfg.compression,
            max_batch_size=cfg.max_batch_bytes,
            max_request_size=max(1 << 20, cfg.max_batch_bytes + (64 << 10)),
            linger_ms=0,  # batches are built here; the producer sends each as soon as it can
            request_timeout_ms=int(cfg.delivery_timeout_s * 1000),
        )
        try:
            await producer.start()
            partitions = sorted(await producer.partitions_for(cfg.topic))
        except Exception as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            self._set_broker_up(False, f"cannot connect to {cfg.bootstrap_servers}: {type(exc).__name__}: {exc}")
            return False
        self._producer, self._partitions = producer, partitions
        self._set_broker_up(True, "")
        return True

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.config.close_timeout_s)

    def _set_broker_up(self, up: bool, reason: str) -> None:
        with self._lock:
            changed = up != self._broker_up
            self._broker_up = up
            if not up:
                self._spill_memory_locked(None)
            self._room.notify_all()
        if changed and up:
            log.info("topic %s: the broker is reachable again", self.config.topic)
        elif changed:
            log.warning("topic %s: delivery suspended, %s", self.config.topic, reason)

    def _spill_memory_locked(self, drop_reason: str | None) -> None:
        """Move the records not yet handed to the producer to the spool (when there is one)."""
        if self._spool is None:
            if drop_reason is not None:
                while self._buf:
                    key, value = self._buf.popleft()
                    self._buf_bytes -= len(key) + len(value) + RECORD_OVERHEAD_BYTES
                    self._unsent_bytes -= len(key) + len(value) + RECORD_OVERHEAD_BYTES
                    self._queued -= 1
                    self._note_drop_locked(drop_reason)
            return
        while self._buf:
            key, value = self._buf.popleft()
            self._buf_bytes -= len(key) + len(value) + RECORD_OVERHEAD_BYTES
            self._unsent_bytes -= len(key) + len(value) + RECORD_OVERHEAD_BYTES
            self._queued -= 1
            self._overflow_locked(key, value)
        self._room.notify_all()

    async def _send_memory(self) -> None:
        with self._lock:
            taken: list[tuple[bytes, bytes]] = []
            budget = self.config.max_batch_bytes * max(1, len(self._partitions))
            while self._buf and budget > 0:
                item = self._buf.popleft()
                size = len(item[0]) + len(item[1]) + RECORD_OVERHEAD_BYTES
                budget -= size
                self._unsent_bytes -= size
                taken.append(item)
        await self._send(taken, from_memory=True)

    async def _send(
        self, records: list[tuple[bytes, bytes]], *, from_memory: bool
    ) -> tuple[list[asyncio.Future[Any]], bool]:
        """Hand records to the producer in per-partition batches; acknowledgements are counted by callbacks.

        Returns the batches' futures, and whether every record was handed over (the others went through
        the failure path).
        """
        producer = self._producer
        assert producer is not None
        n = len(self._partitions) or 1
        builders: dict[int, Any] = {}
        members: dict[int, list[tuple[bytes, bytes]]] = {}
        futures: list[asyncio.Future[Any]] = []
        pending = iter(records)
        try:
            for key, value in pending:
                p = self._partitions[zlib.crc32(key) % n]
                builder = builders.get(p)
                if builder is None:
                    builder = builders[p] = producer.create_batch()
                    members[p] = []
                if builder.append(key=key, value=value, timestamp=None) is not None:
                    members[p].append((key, value))
                    continue
                full, members[p] = members[p], [(key, value)]
                builders[p] = producer.create_batch()
                builders[p].append(key=key, value=value, timestamp=None)
                futures.append(await self._submit_batch(builder, p, full, from_memory))
            for p in list(builders):
                batch = members.pop(p)
                if batch:
                    futures.append(await self._submit_batch(builders[p], p, batch, from_memory))
        except _BatchNotQueued as exc:
            unsent = exc.records + [r for batch in members.values() for r in batch] + list(pending)
            self._delivery_failed(unsent, from_memory, exc.__cause__ or exc)
            return futures, False
        return futures, True

    async def _submit_batch(
        self, builder: Any, partition: int, batch: list[tuple[bytes, bytes]], from_memory: bool
    ) -> asyncio.Future[Any]:
        assert self._producer is not None
        try:
            future: asyncio.Future[Any] = await self._producer.send_batch(
                builder, self.config.topic, partition=partition
            )
        except Exception as exc:
            raise _BatchNotQueued(batch) from exc
        with self._lock:
            self._counts.sent += len(batch)
        self._inflight[id(future)] = (future, batch, from_memory)
        future.add_done_callback(self._on_delivery(batch, from_memory))
        return future

    def _on_delivery(
        self, batch: list[tuple[bytes, bytes]], from_memory: bool
    ) -> Callable[[asyncio.Future[Any]], None]:
        def done(future: asyncio.Future[Any]) -> None:
            if self._inflight.pop(id(future), None) is None:
                return  # stop() already spilled it
            exc = None if future.cancelled() else future.exception()
            if future.cancelled() or exc is not None:
                self._delivery_failed(batch, from_memory, exc or asyncio.CancelledError())
                return
            if not self._broker_up:
                self._set_broker_up(True, "")
            with self._lock:
                self._counts.acknowledged += len(batch)
                if from_memory:
                    self._queued -= len(batch)
                    self._buf_bytes -= _bytes(batch)
                    self._room.notify_all()

        return done

    def _delivery_failed(self, batch: list[tuple[bytes, bytes]], from_memory: bool, exc: BaseException) -> None:
        if not batch:
            return
        with self._lock:
            self._counts.failed += len(batch)
            if from_memory:
                self._queued -= len(batch)
                self._buf_bytes -= _bytes(batch)
                for key, value in batch:
                    self._overflow_locked(key, value)
            self._room.notify_all()
        if from_memory:
            self._set_broker_up(False, f"delivery failed: {type(exc).__name__}: {exc}")

    async def _replay_spool(self) -> bool:
        """Send the spool's segments oldest first, removing each once acknowledged; ``False`` on failure."""
        spool = self._spool
        assert spool is not None
        while True:
            with self._lock:
                segments = spool.ready_segments()
                if not segments:
                    self._spooling = False
                    self._room.notify_all()
                    return True
            for segment in segments:
                contents = await asyncio.to_thread(spool.read, segment)
                futures, all_handed = await self._send(contents.records, from_memory=False)
                results = await asyncio.gather(*futures, return_exceptions=True)
                failures = [r for r in results if isinstance(r, BaseException)]
                if failures or not all_handed:
                    # The whole segment is sent again later: records acknowledged in it become duplicates,
                    # which the datamart collapses by scoring_id.
                    self._set_broker_up(False, f"spool replay failed: {failures[0] if failures else 'not sent'}")
                    return False
                with self._lock:
                    spool.remove(segment)
                if not self._broker_up:
                    self._set_broker_up(True, "")


class _BatchNotQueued(Exception):
    """``send_batch`` refused a batch: its records were never handed over."""

    def __init__(self, records: list[tuple[bytes, bytes]]) -> None:
        super().__init__("the producer refused a batch")
        self.records = records


def _bytes(batch: list[tuple[bytes, bytes]]) -> int:
    return sum(len(k) + len(v) for k, v in batch) + RECORD_OVERHEAD_BYTES * len(batch)
