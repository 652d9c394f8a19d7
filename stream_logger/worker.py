"""The consumer worker: Kafka -> batches -> the datamart, exactly once, with backpressure and clean shutdown.

Two tasks share one event loop:

- the **fetch loop** reads messages (``getmany``), gathers them into a batch bounded by records, bytes and age,
  prepares it (decode, validate, map to rows: :meth:`Sink.prepare`) and queues it;
- the **writer** takes prepared batches in order and writes each in one transaction (:meth:`Sink.write`), then
  commits the offsets to Kafka too, so standard lag tools see progress. The fetch loop commits the datamart's
  positions to Kafka again after each assignment and each progress tick, so that Kafka's offsets converge back to
  them after a Kafka-side reset.

At most ``max_in_flight_batches`` prepared batches wait for the writer; when they do, the fetch loop pauses every
assigned partition (it keeps polling, so the group does not evict it) and resumes once the writer catches up.
Memory is thus bounded by configuration, not by the broker's speed, even during a long database outage.

The datamart's ``consumer_offsets`` table is the source of truth. On assignment each partition is sought to its
stored offset; every batch is *fenced* (see ``sink.py``). When anything may have invalidated the batches in flight
(a revocation, a fenced batch) the worker **rewinds**: it bumps a generation number (older batches are dropped
unwritten), and seeks every partition it owns back to its stored offset.

From the first line of :meth:`Worker.start` to the end of :meth:`Worker.stop`, a watch task keeps a heartbeat (for
``/healthz``) and, once connected, probes PostgreSQL whenever nothing else told whether it answers (for
``/readyz``, see :attr:`Worker.ready`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as TP

from . import contract, datamart
from .config import Settings
from .errors import ConfigError, FatalError, FencedError
from .kafka_clients import start_client
from .metrics import MetricsServer, WorkerMetrics
from .registry import Registry
from .retry import Outage, kafka_errors, pg_errors, retrying
from .sink import Message, PreparedBatch, Sink
from .window import TimestampWindow

__all__ = [
    "DEFAULT_MAX_RECORD_AGE_S",
    "DEFAULT_MAX_RECORD_LEAD_S",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "Worker",
    "WorkerConfig",
    "WorkerSummary",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_SUBSCRIPTIONS = 200
"""Auto-registered subscriptions a datamart takes by default: each is a table, and each of its days a partition."""
DEFAULT_MAX_RECORD_AGE_S = 30 * 86400.0
"""How old a record a live worker stores by default: longer than Kafka's default retention (7 days)."""
DEFAULT_MAX_RECORD_LEAD_S = 86400.0
"""How far ahead of the worker's clock a record may be by default (clocks that are off, time zones got wrong)."""
_HEARTBEAT_INTERVAL_S = 1.0
_LIVENESS_TIMEOUT_S = 15.0  # a loop that has not beaten for this long is wedged: /healthz says so
_DB_PROBE_INTERVAL_S = 3.0  # PostgreSQL silent for this long (an idle worker): probe it
_DB_PROBE_TIMEOUT_S = 5.0
_METADATA_MAX_AGE_MS = 5000  # a topic created after the worker subscribed is picked up within seconds
_MIRROR_TIMEOUT_S = 2.0  # a commit waits for the broker without limit: the fetch loop must not, nor a stop
_worker_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker consumes. Sizes in records and bytes, durations in their unit's name."""

    topics: tuple[str, ...]
    group_id: str
    schema: str
    batch_max_records: int = 5000
    batch_max_bytes: int = 8 * 1024 * 1024
    flush_interval_ms: int = 500
    max_in_flight_batches: int = 2
    max_record_bytes: int = contract.DEFAULT_MAX_RECORD_BYTES
    shutdown_grace_s: float = 30.0
    until_caught_up: bool = False
    auto_register: bool = True
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    """Where ``metrics_port`` listens: every interface by default (probes reach a container on its own address)."""
    pool_size: int = 4
    progress_interval_s: float = 10.0
    assign_manually: bool = False
    """Replay mode: read ``topics`` with manual assignment (no group, no rebalance, no Kafka commits)."""
    start_offsets: dict[TP, int] | None = None
    end_offsets: dict[TP, int] | None = None
    subscriptions: frozenset[str] | None = None
    """Keep only records of these subscriptions (others are skipped: no row, no dead letter)."""
    max_subscriptions: int | None = DEFAULT_MAX_SUBSCRIPTIONS
    """Auto-register at most this many subscriptions in the datamart (None: no limit); records of a new one past
    it are dead-lettered as ``subscription_limit``."""
    max_record_age_s: float | None = DEFAULT_MAX_RECORD_AGE_S
    """Dead-letter (``timestamp_out_of_window``) records scored longer ago than this (None: no limit)."""
    max_record_lead_s: float | None = DEFAULT_MAX_RECORD_LEAD_S
    """Dead-letter (``timestamp_out_of_window``) records scored further in the future than this (None: no limit)."""


@dataclass(slots=True)
class WorkerSummary:
    """What a worker did, for its final log line and for ``--until-caught-up`` callers."""

    messages: int = 0
    rows: int = 0
    duplicates_skipped: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    fenced_batches: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Sequence[TP]) -> None:
        await self._worker._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TP]) -> None:
        await self._worker._on_assigned(set(assigned))


class Worker:
    """One consumer-group member writing into one datamart schema. ``async with Worker(...) as w: await w.run()``."""

    def __init__(self, config: WorkerConfig, settings: Settings | None = None) -> None:
        if not config.topics:
            raise ValueError("a worker needs at least one topic")
        self.config = config
        self.settings = settings or Settings.from_env()
        self.metrics = WorkerMetrics()
        self.summary = WorkerSummary()
        self.client_id = _next_client_id()
        """The Kafka client id, distinct per worker: Kafka's tools (``kafka-consumer-groups.sh --describe``) show it."""
        self._pool: asyncpg.Pool | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._sink: Sink | None = None
        self._metrics_server: MetricsServer | None = None
        self._stopping = asyncio.Event()
        self._started = False
        self._closed = False
        self._postgres = Outage("PostgreSQL", on_retry=self.metrics.retries.labels("postgresql").inc)
        self._kafka = Outage("Kafka", on_retry=self.metrics.retries.labels("kafka").inc)
        self._postgres_answered_at = 0.0
        self._heartbeat = time.monotonic()
        self._watcher: asyncio.Task[None] | None = None
        self._in_group = False  # holds an assignment (possibly empty): not before the first, not mid-rebalance
        # partition state
        self._owned: set[TP] = set()
        self._start: dict[TP, int] = {}  # where reading began (stored offset, else Kafka's)
        self._written: dict[TP, int] = {}  # next offset committed to the datamart
        self._expected: dict[TP, int] = {}  # the start of the next batch handed to the writer
        self._targets: dict[TP, int] = {}  # --until-caught-up: end offsets when first assigned
        self._seen_to: dict[TP, int] = {}  # one past the last offset fetched (bounded reads: past the end too)
        self._lag_labels: set[TP] = set()
        self._paused = False
        self._assigned_once = asyncio.Event()
        # batches
        self._generation = 0
        self._pending: list[Message] = []
        self._pending_ranges: dict[tuple[str, int], tuple[int, int]] = {}
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._ready: asyncio.Queue[PreparedBatch] = asyncio.Queue(maxsize=max(1, config.max_in_flight_batches))
        self._write_idle = asyncio.Event()
        self._write_idle.set()
        self._writer_took = asyncio.Event()  # set each time the writer takes a batch off the queue
        self._mirror_due = False  # the datamart's positions are to be committed to Kafka
        self.metrics.ready.set_function(lambda: float(self._ready_now()))

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve the probes (with ``metrics_port``), then connect to PostgreSQL (checking the datamart exists) and
        Kafka, and join the group. A service that cannot be reached yet is waited for; :meth:`request_stop` during
        that wait ends it: start() returns without joining, and :meth:`run` returns at once."""
        if self._started:
            return
        self._started = True
        try:
            self._serve_probes()
            self._watcher = asyncio.create_task(self._watch(), name="stream-logger-watch")
            await self._connect_unless_stopped()
        except BaseException:
            await self.stop()
            raise

    def _serve_probes(self) -> None:
        cfg = self.config
        if cfg.metrics_port is None:
            return
        server = MetricsServer(
            self.metrics, cfg.metrics_port, cfg.metrics_host, alive=self._alive, ready=self._ready_now
        )
        try:
            server.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {cfg.metrics_host}:{cfg.metrics_port}: {exc}") from exc
        self._metrics_server = server

    async def _connect_unless_stopped(self) -> None:
        connecting = asyncio.create_task(self._connect(), name="stream-logger-connect")
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not connecting.done():
                connecting.cancel()
                await asyncio.gather(connecting, return_exceptions=True)
                if self._stopping.is_set():
                    log.info("stop requested during start-up: leaving without joining the group")
        if not connecting.cancelled():
            connecting.result()  # its failure, if any

    async def _connect(self) -> None:
        cfg = self.config
        where = f"connecting to PostgreSQL at {self.settings.redacted_dsn}"
        async for attempt in retrying(where, on_retry=self._postgres.retried):  # a database starting up is waited for
            with attempt, pg_errors(where):
                self._pool = await asyncpg.create_pool(self.settings.dsn, min_size=1, max_size=cfg.pool_size)
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            with pg_errors("checking the datamart"):
                await datamart.require_datamart(conn, cfg.schema)
        self._postgres_answered()
        registry = Registry(cfg.schema, auto_register=cfg.auto_register, max_auto_registered=cfg.max_subscriptions)
        self._sink = Sink(
            self._pool,
            cfg.schema,
            cfg.group_id,
            registry,
            max_record_bytes=cfg.max_record_bytes,
            subscriptions=cfg.subscriptions,
            window=TimestampWindow(cfg.max_record_age_s, cfg.max_record_lead_s),
            on_retry=self._postgres.retried,
        )
        consumer = self._consumer = await self._start_consumer()
        if cfg.assign_manually:
            tps = await self._partitions_of(cfg.topics)
            consumer.assign(list(tps))
            await self._on_assigned(set(tps))
        else:
            consumer.subscribe(list(cfg.topics), listener=_Listener(self))
        log.info(
            "worker started",
            extra={"group": cfg.group_id, "topics": list(cfg.topics), "schema": cfg.schema},
        )

    async def _start_consumer(self) -> AIOKafkaConsumer:
        """A started consumer; a broker that cannot be reached yet is waited for (retried with backoff)."""
        cfg = self.config
        fetch_bytes = max(cfg.max_record_bytes + 65536, 1024 * 1024)
        where = f"connecting to Kafka at {self.settings.bootstrap_servers}"
        async for attempt in retrying(where, on_retry=self._kafka.retried):
            with attempt, kafka_errors(where):
                consumer = AIOKafkaConsumer(
                    **self.settings.aiokafka_kwargs(client_id=self.client_id),
                    group_id=None if cfg.assign_manually else cfg.group_id,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_partition_fetch_bytes=fetch_bytes,
                    fetch_max_bytes=max(fetch_bytes, min(cfg.batch_max_bytes, 50 * 1024 * 1024)),
                    max_poll_interval_ms=600_000,
                    # A fetch long-polls on the connection that offset lookups share: at Kafka's 500 ms, each
                    # lookup on assignment waited behind one (a second at every start).
                    fetch_max_wait_ms=100,
                    isolation_level="read_committed",
                    metadata_max_age_ms=_METADATA_MAX_AGE_MS,
                )
                try:
                    await start_client(consumer, self.settings, where)
                except BaseException:
                    await _stop_consumer(consumer)
                    raise
                self._kafka.answered()
                return consumer
        raise AssertionError("unreachable")  # pragma: no cover

    async def _partitions_of(self, topics: Sequence[str]) -> set[TP]:
        assert self._consumer is not None
        tps: set[TP] = set()
        for topic in topics:
            parts = None
            for _ in range(50):
                parts = self._consumer.partitions_for_topic(topic)
                if parts:
                    break
                await self._consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            if not parts:
                raise FatalError(f"topic {topic!r} does not exist")
            tps.update(TP(topic, p) for p in parts)
        return tps

    def request_stop(self) -> None:
        """Ask the worker to stop: it finishes the current batch within the grace period, then returns from run()."""
        self._stopping.set()

    async def stop(self) -> None:
        """Leave the group and close every connection. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._consumer is not None:
            await _stop_consumer(self._consumer)
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.stop)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 10)
            except (TimeoutError, Exception):
                self._pool.terminate()

    # -- health -------------------------------------------------------------------------------------------

    @property
    def metrics_port(self) -> int | None:
        """The port serving ``/metrics``, ``/healthz`` and ``/readyz`` (the bound one with port 0), if any."""
        return self._metrics_server.port if self._metrics_server is not None else None

    @property
    def ready(self) -> bool:
        """``/readyz``: started, holding an assignment, PostgreSQL answering, not stopping. See the README."""
        return self._ready_now()

    def _ready_now(self) -> bool:
        # Called from the metrics server's threads too: it only reads.
        return self._in_group and not self._postgres.down and not self._stopping.is_set()

    def _alive(self) -> bool:
        return time.monotonic() - self._heartbeat < _LIVENESS_TIMEOUT_S

    def _postgres_answered(self) -> None:
        self._postgres_answered_at = time.monotonic()
        self._postgres.answered()

    async def _watch(self) -> None:
        """Beat for ``/healthz``; once connected, probe PostgreSQL whenever it has been silent for a while."""
        while True:
            self._heartbeat = time.monotonic()
            if self._sink is not None and self._heartbeat - self._postgres_answered_at >= _DB_PROBE_INTERVAL_S:
                await self._probe_postgres()
            await asyncio.sleep(_HEARTBEAT_INTERVAL_S)

    async def _probe_postgres(self) -> None:
        assert self._pool is not None
        try:
            with pg_errors("probing PostgreSQL"):
                await asyncio.wait_for(self._pool.fetchval("SELECT 1"), _DB_PROBE_TIMEOUT_S)
        except Exception as exc:
            self._postgres.failed(exc)
        else:
            self._postgres_answered()

    # -- the main loop --------------------------------------------------------------------------------------

    async def run(self) -> WorkerSummary:
        """Consume until asked to stop (or, with ``until_caught_up``, until every partition is written)."""
        await self.start()
        if self._consumer is None or self._sink is None:  # stopped during start-up
            return self.summary
        began = time.monotonic()
        writer = asyncio.create_task(self._write_loop(), name="stream-logger-writer")
        fetcher = asyncio.create_task(self._fetch_loop(), name="stream-logger-fetcher")
        try:
            done, _ = await asyncio.wait({writer, fetcher}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:  # the writer only ends by failing
                fetcher.cancel()
                writer.result()
            await fetcher  # returns after flushing its last batch
            await self._drain(writer)
        finally:
            for task in (fetcher, writer):
                task.cancel()
            await asyncio.gather(fetcher, writer, return_exceptions=True)
            self.summary.elapsed_s = time.monotonic() - began
            self._log_progress(final=True)
        return self.summary

    async def _drain(self, writer: asyncio.Task[None]) -> None:
        """Let the writer finish what is queued, within the grace period (a stop) or without limit (caught up)."""
        deadline = None if not self._stopping.is_set() else self.config.shutdown_grace_s
        try:
            await asyncio.wait_for(self._queue_empty_and_idle(writer), deadline)
        except TimeoutError:
            log.warning("shutdown grace period over: abandoning unwritten batches (they will be re-read)")

    async def _queue_empty_and_idle(self, writer: asyncio.Task[None]) -> None:
        while not (self._ready.empty() and self._write_idle.is_set()):
            if writer.done():
                writer.result()
                return
            await asyncio.sleep(0.02)

    async def _fetch_loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        cfg = self.config
        flush_s = cfg.flush_interval_ms / 1000
        next_progress = time.monotonic() + cfg.progress_interval_s
        while not self._stopping.is_set():
            self._apply_backpressure()
            room = cfg.batch_max_records - len(self._pending)
            if self._paused:
                # Nothing can arrive: wait for the writer to take a batch, not for a poll's timeout (which left the
                # writer idle up to 200 ms each time), then poll at once so the group sees the consumer alive.
                self._writer_took.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._writer_took.wait(), 0.2)
                self._apply_backpressure()
            timeout_ms = 0 if self._paused else min(200, cfg.flush_interval_ms)
            fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=max(1, room))
            for tp, messages in fetched.items():
                self._take(tp, messages)
            if self._mirror_due:
                await self._mirror_positions()
            now = time.monotonic()
            if (
                self._pending
                and not self._ready.full()
                and (
                    len(self._pending) >= cfg.batch_max_records
                    or self._pending_bytes >= cfg.batch_max_bytes
                    or now - self._pending_since >= flush_s
                    or (cfg.until_caught_up and self._fetched_to_targets())
                )
            ):
                await self._cut()
            if now >= next_progress:
                next_progress = now + cfg.progress_interval_s
                self._mirror_due = True
                self._update_lag()
                self._log_progress()
            if cfg.until_caught_up and not fetched:
                await self._note_positions()
            if cfg.until_caught_up and self._caught_up():
                log.info("caught up with the end offsets taken at start")
                return
        if self._pending:  # stopping: the last, partial batch is still written (within the grace period)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cut(), self.config.shutdown_grace_s)

    def _take(self, tp: TP, messages: Sequence[Any]) -> None:
        """Add fetched messages to the pending batch, ignoring any a seek made stale."""
        if tp not in self._owned or not messages:
            return
        self._seen_to[tp] = max(self._seen_to.get(tp, 0), messages[-1].offset + 1)
        if self.config.end_offsets is not None:  # a bounded read (replay): nothing at or past the end
            end_offset = self._targets.get(tp, 0)
            messages = [m for m in messages if m.offset < end_offset]
            if not messages:
                return
        expected = self._expected.get(tp, 0)
        fresh = [m for m in messages if m.offset >= expected] if messages[0].offset < expected else messages
        if not fresh:
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        key = (tp.topic, tp.partition)
        start = self._pending_ranges[key][0] if key in self._pending_ranges else expected
        end = fresh[-1].offset + 1
        self._pending_ranges[key] = (start, end)
        self._expected[tp] = end
        self._pending.extend(fresh)
        self._pending_bytes += sum(len(m.value) if m.value else 0 for m in fresh)
        self.metrics.consumed.inc(len(fresh))

    async def _cut(self) -> None:
        """Prepare the pending messages as one batch and queue it for the writer."""
        assert self._sink is not None
        messages, ranges, generation = self._pending, self._pending_ranges, self._generation
        self._pending, self._pending_ranges, self._pending_bytes = [], {}, 0
        batch = await self._sink.prepare(messages, ranges, generation)
        if batch.generation == self._generation:  # else a rewind happened meanwhile: those offsets are re-read
            await self._ready.put(batch)
            self.metrics.in_flight_batches.set(self._ready.qsize())

    def _apply_backpressure(self) -> None:
        assert self._consumer is not None
        full = self._ready.full()
        if full and not self._paused and self._owned:
            self._consumer.pause(*self._owned)
            self._paused = True
            self.metrics.paused_partitions.set(len(self._owned))
            log.info("writer behind: pausing %d partitions", len(self._owned))
        elif not full and self._paused:
            self._consumer.resume(*self._consumer.assignment())
            self._paused = False
            self.metrics.paused_partitions.set(0)
            log.info("writer caught up: resuming")

    async def _write_loop(self) -> None:
        assert self._sink is not None and self._consumer is not None
        while True:
            batch = await self._ready.get()
            self._writer_took.set()
            self.metrics.in_flight_batches.set(self._ready.qsize() + 1)
            if batch.generation != self._generation:
                continue
            self._write_idle.clear()
            began = time.monotonic()
            try:
                outcome = await self._sink.write(batch)
            except FencedError as exc:
                self.metrics.fenced.inc()
                self.summary.fenced_batches += 1
                log.info("batch fenced, rewinding: %s", exc)
                await self._rewind()
                continue
            finally:
                self._write_idle.set()
            self._account(batch, outcome.rows_written, outcome.duplicates_skipped, outcome.dead_letters, began)
            await self._commit_to_kafka(batch)

    def _account(self, batch: PreparedBatch, rows: int, duplicates: int, dead: dict[str, int], began: float) -> None:
        m, s = self.metrics, self.summary
        for (topic, partition), (_, end) in batch.ranges.items():
            self._written[TP(topic, partition)] = end
        m.write_seconds.observe(time.monotonic() - began)
        m.batch_records.observe(batch.messages)
        m.records_committed.inc(batch.messages)
        m.written_rows.inc(rows)
        m.duplicates.inc(duplicates)
        s.messages += batch.messages
        s.skipped += batch.skipped
        s.rows += rows
        s.duplicates_skipped += duplicates
        for code, n in dead.items():
            m.dead_letters.labels(code).inc(n)
            s.dead_letters[code] = s.dead_letters.get(code, 0) + n
        self._postgres_answered()

    async def _commit_to_kafka(self, batch: PreparedBatch) -> None:
        """Mirror a written batch's offsets into the group's Kafka offsets."""
        await self._commit_offsets({TP(t, p): end for (t, p), (_, end) in batch.ranges.items()})

    async def _mirror_positions(self) -> None:
        """Commit the datamart's position of every owned partition to Kafka (after each assignment and each
        progress tick): after a Kafka-side offset reset, or a commit lost to a rebalance, the group's Kafka
        offsets converge back to the datamart's, even on a partition where nothing new arrives."""
        self._mirror_due = False
        positions = dict(self._written)
        try:
            await asyncio.wait_for(self._commit_offsets(positions), _MIRROR_TIMEOUT_S)
        except TimeoutError:  # the broker is unreachable: the next progress tick tries again
            log.debug("Kafka offset commit timed out after %.0f s", _MIRROR_TIMEOUT_S)
            return
        if any(self._written.get(tp) != pos for tp, pos in positions.items()):
            self._mirror_due = True  # a batch committed meanwhile may have been overtaken by this older position

    async def _commit_offsets(self, offsets: dict[TP, int]) -> None:
        """Commit the owned partitions' offsets to Kafka (best effort; the datamart is the truth)."""
        assert self._consumer is not None
        if self.config.assign_manually:
            return
        offsets = {tp: offset for tp, offset in offsets.items() if tp in self._owned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:  # a rebalance in progress, a broker restarting: the next commit catches up
            log.info("Kafka offset commit skipped: %s", exc)

    # -- rebalances and rewinds -----------------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TP]) -> None:
        self._in_group = False  # until the rebalance assigns again
        self._owned -= revoked
        self._invalidate_in_flight()
        try:  # let a write in progress finish: its offsets are fenced, but finishing saves re-reading
            await asyncio.wait_for(self._write_idle.wait(), min(10.0, self.config.shutdown_grace_s))
        except TimeoutError:
            log.warning("revoked while a batch write is still retrying; its offsets are fenced")
        for tp in revoked & self._lag_labels:
            self.metrics.lag.remove(tp.topic, str(tp.partition))
        self._lag_labels -= revoked
        self.metrics.assigned_partitions.set(len(self._owned))

    async def _on_assigned(self, assigned: set[TP]) -> None:
        assert self._consumer is not None and self._sink is not None
        consumer = self._consumer
        # Every await comes first; the state change after it has none, so the fetch loop (which only drops
        # messages of partitions it does not own meanwhile) sees either the old state or the new one, never a mix.
        keys = [(tp.topic, tp.partition) for tp in assigned]
        stored: dict[tuple[str, int], int] = {}
        try:
            async for attempt in retrying("reading stored offsets", max_total_s=15, on_retry=self._postgres.retried):
                with attempt:
                    stored = await self._sink.stored_offsets(keys)
        except Exception as exc:  # fall back to Kafka's offsets: fencing corrects any difference later
            log.warning("stored offsets unavailable (%s); starting from Kafka's committed offsets", exc)
        written = {TP(*key): pos for key, pos in stored.items()}
        start = dict(written)
        missing = [tp for tp in assigned if tp not in start]
        for tp in missing:
            if self.config.start_offsets and tp in self.config.start_offsets:
                start[tp] = self.config.start_offsets[tp]
        missing = [tp for tp in assigned if tp not in start]
        if missing:
            begin = await consumer.beginning_offsets(missing)
            for tp in missing:
                committed = None if self.config.assign_manually else await consumer.committed(tp)
                start[tp] = committed if committed is not None else begin[tp]
        new_targets: dict[TP, int] = {}
        new = [tp for tp in assigned if tp not in self._targets]
        if self.config.end_offsets is not None:
            new_targets = {tp: self.config.end_offsets.get(tp, 0) for tp in new}
        elif self.config.until_caught_up and new:
            new_targets = await consumer.end_offsets(new)

        self._invalidate_in_flight()
        self._owned = set(assigned)
        self._paused = False
        self._targets.update(new_targets)
        for tp in assigned:
            if tp in written:
                self._written[tp] = written[tp]
            else:
                self._written.pop(tp, None)
            self._seek(tp, start[tp])
            self._start[tp] = start[tp]
        self.metrics.assigned_partitions.set(len(self._owned))
        self._assigned_once.set()
        self._in_group = True
        self._mirror_due = True  # Kafka's offsets may have been reset while the group was empty
        log.info("assigned %d partitions", len(assigned), extra={"partitions": sorted(map(str, assigned))})

    def _seek(self, tp: TP, offset: int) -> None:
        assert self._consumer is not None
        self._expected[tp] = offset
        self._seen_to[tp] = offset
        self._consumer.seek(tp, offset)

    def _invalidate_in_flight(self) -> None:
        """Drop every batch not yet written: a new generation starts."""
        self._generation += 1
        self._pending, self._pending_ranges, self._pending_bytes = [], {}, 0
        while not self._ready.empty():
            self._ready.get_nowait()

    async def _rewind(self) -> None:
        """Drop the batches in flight and re-read every owned partition from its stored offset."""
        assert self._sink is not None
        # awaited before any state changes, as in _on_assigned
        stored = await self._sink.stored_offsets([(tp.topic, tp.partition) for tp in self._owned])
        self._invalidate_in_flight()
        for tp in self._owned:
            if (tp.topic, tp.partition) in stored:
                self._written[tp] = stored[(tp.topic, tp.partition)]
            self._seek(tp, self._written.get(tp, self._start.get(tp, 0)))

    # -- progress -------------------------------------------------------------------------------------------

    def _position(self, tp: TP) -> int:
        return self._written.get(tp, self._start.get(tp, 0))

    def _caught_up(self) -> bool:
        if not self._assigned_once.is_set() or self._pending or not self._ready.empty():
            return False
        if not self._write_idle.is_set():
            return False
        return all(self._partition_done(tp) for tp in self._owned)

    async def _note_positions(self) -> None:
        """Count the consumer's position as seen: with nothing to fetch, it may have moved past offsets that no
        message holds any more (retention deleted them, the consumer reset to the log start), and a bounded read
        waiting for a message at or past its end would otherwise wait for ever."""
        assert self._consumer is not None
        for tp in self._owned:
            if not self._partition_done(tp):
                position = await self._consumer.position(tp)
                self._seen_to[tp] = max(self._seen_to.get(tp, 0), position)

    def _fetched_to_targets(self) -> bool:
        """Every owned partition fetched up to its target: the last batch has nothing to wait for."""
        return self._assigned_once.is_set() and all(
            self._seen_to.get(tp, 0) >= self._targets.get(tp, 0) for tp in self._owned
        )

    def _partition_done(self, tp: TP) -> bool:
        target = self._targets.get(tp, 0)
        position = self._position(tp)
        # Past the last message before the target there may be no message at all (a bounded read's end, or
        # transaction markers): what was fetched up to the target and is all written counts as done.
        return position >= target or (
            self._seen_to.get(tp, 0) >= target and self._expected.get(tp, position) == position
        )

    def _update_lag(self) -> None:
        for tp, lag in self.lag().items():
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
            self._lag_labels.add(tp)

    def progress(self) -> dict[TP, tuple[int, int, int]]:
        """Per owned partition: (start, position committed to the datamart, target); target 0 when unbounded."""
        return {
            tp: (self._start.get(tp, 0), self._position(tp), self._targets.get(tp, 0)) for tp in sorted(self._owned)
        }

    def lag(self) -> dict[TP, int]:
        """Messages not yet committed to the datamart, per owned partition (from the last fetch's high water)."""
        assert self._consumer is not None
        out = {}
        for tp in self._owned:
            high = self._consumer.highwater(tp)
            if high is not None:
                out[tp] = max(0, high - self._position(tp))
        return out

    def _log_progress(self, final: bool = False) -> None:
        s = self.summary
        log.info(
            "%s: %d messages, %d rows, %d dead letters, %d duplicates skipped",
            "done" if final else "progress",
            s.messages,
            s.rows,
            s.dead_lettered,
            s.duplicates_skipped,
            extra={"messages": s.messages, "rows": s.rows, "dead_letters": s.dead_letters},
        )


def _next_client_id() -> str:
    """``stream-logger-<host>-<pid>``, with ``-2``, ``-3``, ... for a process's later workers (the demo runs
    several in one process)."""
    number = next(_worker_numbers)
    return f"stream-logger-{socket.gethostname()}-{os.getpid()}" + (f"-{number}" if number > 1 else "")


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer in whatever state it is. With the broker down, aiokafka's stop() cancels its own pending
    fetch tasks and lets their CancelledError out (a BaseException): that one is swallowed, unless this task
    itself is being cancelled."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("the Kafka consumer's stop() let out a cancellation of its own tasks")
    except Exception as exc:
        log.debug("stopping the Kafka consumer: %s", exc)
