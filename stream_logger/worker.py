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
import logging
import time
from collections.abc import Sequence
from typing import Any, Self

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as TP

from . import datamart
from .config import Settings
from .errors import FencedError
from .health import WorkerHealth
from .kafka_clients import start_consumer, stop_consumer, topic_partitions
from .lifecycle import Lifecycle, State
from .metrics import WorkerMetrics
from .partitions import PartitionState, PendingBatch
from .registry import Registry
from .retry import Outage, pg_errors, retrying
from .sink import PreparedBatch, Sink
from .window import TimestampWindow
from .worker_config import (
    DEFAULT_MAX_RECORD_AGE_S,
    DEFAULT_MAX_RECORD_LEAD_S,
    DEFAULT_MAX_SUBSCRIPTIONS,
    WorkerConfig,
    WorkerSummary,
    next_client_id,
)

__all__ = [
    "DEFAULT_MAX_RECORD_AGE_S",
    "DEFAULT_MAX_RECORD_LEAD_S",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "Worker",
    "WorkerConfig",
    "WorkerSummary",
]

log = logging.getLogger(__name__)

_METADATA_MAX_AGE_MS = 5000  # a topic created after the worker subscribed is picked up within seconds
_MIRROR_TIMEOUT_S = 2.0  # a commit waits for the broker without limit: the fetch loop must not, nor a stop


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Sequence[TP]) -> None:
        await self._worker._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TP]) -> None:
        await self._worker._on_assigned(set(assigned))


class Worker:
    """One consumer-group member writing into one datamart schema. ``async with Worker(...) as w: await w.run()``.

    ``start()``/``stop()`` follow :mod:`stream_logger.lifecycle`: a stopped worker cannot start again
    (:class:`~stream_logger.errors.LifecycleError`), and one collected while started warns with a ResourceWarning.
    """

    def __init__(self, config: WorkerConfig, settings: Settings | None = None) -> None:
        if not config.topics:
            raise ValueError("a worker needs at least one topic")
        self.config = config
        self.settings = settings or Settings.from_env()
        self.metrics = WorkerMetrics()
        self.summary = WorkerSummary()
        self.client_id = next_client_id()
        """The Kafka client id, distinct per worker: Kafka's tools (``kafka-consumer-groups.sh --describe``) show it."""
        self._pool: asyncpg.Pool | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._sink: Sink | None = None
        self._lifecycle = Lifecycle("Worker")
        self._stopping = asyncio.Event()
        self._postgres = Outage("PostgreSQL", on_retry=self.metrics.retries.labels("postgresql").inc)
        self._kafka = Outage("Kafka", on_retry=self.metrics.retries.labels("kafka").inc)
        self._health = WorkerHealth(self._postgres)
        self._in_group = False  # holds an assignment (possibly empty): not before the first, not mid-rebalance
        self._partitions: dict[TP, PartitionState] = {}  # the partitions owned now
        self._targets: dict[TP, int] = {}  # a bounded run's end offsets, taken when each was first assigned
        self._paused = False
        self._assigned_once = asyncio.Event()
        # batches
        self._generation = 0
        self._pending = PendingBatch()
        self._ready: asyncio.Queue[PreparedBatch] = asyncio.Queue(maxsize=max(1, config.max_in_flight_batches))
        self._write_idle = asyncio.Event()
        self._write_idle.set()
        self._writer_took = asyncio.Event()  # set each time the writer takes a batch off the queue
        self._mirror_due = False  # the datamart's positions are to be committed to Kafka
        self.metrics.ready.set_function(lambda: float(self._ready_now()))

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __del__(self) -> None:
        if hasattr(self, "_lifecycle"):  # __init__ may have refused the config
            self._lifecycle.warn_if_running(self, f" (group {self.config.group_id}): call stop()")

    @property
    def state(self) -> State:
        """Where the worker is in its lifecycle: NEW, STARTED, STOPPING or STOPPED."""
        return self._lifecycle.state

    async def start(self) -> None:
        """Serve the probes (with ``metrics_port``), then connect to PostgreSQL (checking the datamart exists) and
        Kafka, and join the group. A service that cannot be reached yet is waited for; :meth:`request_stop` during
        that wait ends it: start() returns without joining, and :meth:`run` returns at once.

        Calling it again does nothing; after :meth:`stop` it raises :class:`~stream_logger.errors.LifecycleError`.
        A start that fails stops the worker."""
        if not self._lifecycle.may_start():
            return
        self._lifecycle.started()
        try:
            if self.config.metrics_port is not None:
                self._health.serve(self.metrics, self.config.metrics_port, self.config.metrics_host, self._ready_now)
            self._health.start_watching()
            await self._connect_unless_stopped()
        except BaseException:
            await self.stop()
            raise

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
        self._health.postgres_answered()
        self._health.probe_through(self._pool)
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
            tps = await topic_partitions(consumer, cfg.topics, wait_s=5.0)
            consumer.assign(tps)
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
        consumer = await start_consumer(
            self.settings,
            f"connecting to Kafka at {self.settings.bootstrap_servers}",
            self._kafka.retried,
            client_id=self.client_id,
            group_id=None if cfg.assign_manually else cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=max(fetch_bytes, min(cfg.batch_max_bytes, 50 * 1024 * 1024)),
            max_poll_interval_ms=600_000,
            # A fetch long-polls on the connection that offset lookups share: at Kafka's 500 ms, each lookup on
            # assignment waited behind one (a second at every start).
            fetch_max_wait_ms=100,
            isolation_level="read_committed",
            metadata_max_age_ms=_METADATA_MAX_AGE_MS,
        )
        self._kafka.answered()
        return consumer

    def request_stop(self) -> None:
        """Ask the worker to stop: it finishes the current batch within the grace period, then returns from run()."""
        self._stopping.set()

    async def stop(self) -> None:
        """Leave the group and close every connection. Safe to call twice; a worker never started is only marked
        stopped."""
        self._stopping.set()
        if not self._lifecycle.may_stop():
            return
        try:
            await self._health.stop_watching()
            if self._consumer is not None:
                await stop_consumer(self._consumer)
            await self._health.stop_serving()
            if self._pool is not None:
                try:
                    await asyncio.wait_for(self._pool.close(), 10)
                except (TimeoutError, Exception):
                    self._pool.terminate()
        finally:
            self._lifecycle.stopped()

    # -- health -------------------------------------------------------------------------------------------

    @property
    def metrics_port(self) -> int | None:
        """The port serving ``/metrics``, ``/healthz`` and ``/readyz`` (the bound one with port 0), if any."""
        return self._health.server.port if self._health.server is not None else None

    @property
    def ready(self) -> bool:
        """``/readyz``: started, holding an assignment, PostgreSQL answering, not stopping. See the README."""
        return self._ready_now()

    def _ready_now(self) -> bool:
        # Called from the metrics server's threads too: it only reads.
        return self._in_group and not self._postgres.down and not self._stopping.is_set()

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
            self.summary.log(final=True)
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
            room = cfg.batch_max_records - len(self._pending.messages)
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
                self._add_to_pending_batch(tp, messages)
            if self._mirror_due:
                await self._mirror_positions()
            now = time.monotonic()
            pending = self._pending
            if (
                pending.messages
                and not self._ready.full()
                and (
                    len(pending.messages) >= cfg.batch_max_records
                    or pending.size_bytes >= cfg.batch_max_bytes
                    or now - pending.since >= flush_s
                    or (cfg.until_caught_up and self._fetched_to_targets())
                )
            ):
                await self._hand_batch_to_writer()
            if now >= next_progress:
                next_progress = now + cfg.progress_interval_s
                self._mirror_due = True
                self._update_lag()
                self.summary.log()
            if cfg.until_caught_up and not fetched:
                await self._note_positions()
            if cfg.until_caught_up and self._caught_up():
                log.info("caught up with the end offsets taken at start")
                return
        if self._pending.messages:  # stopping: the last, partial batch is still written (within the grace period)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hand_batch_to_writer(), self.config.shutdown_grace_s)

    def _add_to_pending_batch(self, tp: TP, messages: Sequence[Any]) -> None:
        """Add fetched messages to the pending batch, ignoring any a seek made stale."""
        partition = self._partitions.get(tp)
        if partition is None:
            return
        added = self._pending.add(tp, partition, messages, bounded=self.config.end_offsets is not None)
        if added:
            self.metrics.consumed.inc(added)

    async def _hand_batch_to_writer(self) -> None:
        """Prepare the pending messages as one batch and queue it for the writer."""
        assert self._sink is not None
        pending, generation = self._pending, self._generation
        self._pending = PendingBatch()
        batch = await self._sink.prepare(pending.messages, pending.ranges, generation)
        if batch.generation == self._generation:  # else a rewind happened meanwhile: those offsets are re-read
            await self._ready.put(batch)
            self.metrics.in_flight_batches.set(self._ready.qsize())

    def _apply_backpressure(self) -> None:
        assert self._consumer is not None
        full = self._ready.full()
        if full and not self._paused and self._partitions:
            self._consumer.pause(*self._partitions)
            self._paused = True
            self.metrics.paused_partitions.set(len(self._partitions))
            log.info("writer behind: pausing %d partitions", len(self._partitions))
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
        m = self.metrics
        for (topic, number), (_, end) in batch.ranges.items():
            partition = self._partitions.get(TP(topic, number))
            if partition is not None:  # else revoked while it was written
                partition.written_offset = end
        m.write_seconds.observe(time.monotonic() - began)
        m.batch_records.observe(batch.messages)
        m.records_committed.inc(batch.messages)
        m.written_rows.inc(rows)
        m.duplicates.inc(duplicates)
        for code, n in dead.items():
            m.dead_letters.labels(code).inc(n)
        self.summary.add(batch.messages, batch.skipped, rows, duplicates, dead)
        self._health.postgres_answered()

    async def _commit_to_kafka(self, batch: PreparedBatch) -> None:
        """Mirror a written batch's offsets into the group's Kafka offsets."""
        await self._commit_offsets({TP(t, p): end for (t, p), (_, end) in batch.ranges.items()})

    async def _mirror_positions(self) -> None:
        """Commit the datamart's position of every owned partition to Kafka (after each assignment and each
        progress tick): after a Kafka-side offset reset, or a commit lost to a rebalance, the group's Kafka
        offsets converge back to the datamart's, even on a partition where nothing new arrives."""
        self._mirror_due = False
        positions = {tp: p.written_offset for tp, p in self._partitions.items() if p.written_offset is not None}
        try:
            await asyncio.wait_for(self._commit_offsets(positions), _MIRROR_TIMEOUT_S)
        except TimeoutError:  # the broker is unreachable: the next progress tick tries again
            log.debug("Kafka offset commit timed out after %.0f s", _MIRROR_TIMEOUT_S)
            return
        if any(self._written_offset(tp) != pos for tp, pos in positions.items()):
            self._mirror_due = True  # a batch committed meanwhile may have been overtaken by this older position

    async def _commit_offsets(self, offsets: dict[TP, int]) -> None:
        """Commit the owned partitions' offsets to Kafka (best effort; the datamart is the truth)."""
        assert self._consumer is not None
        if self.config.assign_manually:
            return
        offsets = {tp: offset for tp, offset in offsets.items() if tp in self._partitions}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:  # a rebalance in progress, a broker restarting: the next commit catches up
            log.info("Kafka offset commit skipped: %s", exc)

    # -- rebalances and rewinds -----------------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TP]) -> None:
        self._in_group = False  # until the rebalance assigns again
        gone = {tp: self._partitions.pop(tp) for tp in revoked if tp in self._partitions}
        self._invalidate_in_flight()
        try:  # let a write in progress finish: its offsets are fenced, but finishing saves re-reading
            await asyncio.wait_for(self._write_idle.wait(), min(10.0, self.config.shutdown_grace_s))
        except TimeoutError:
            log.warning("revoked while a batch write is still retrying; its offsets are fenced")
        for tp, partition in gone.items():
            if partition.lag_reported:
                self.metrics.lag.remove(tp.topic, str(tp.partition))
        self.metrics.assigned_partitions.set(len(self._partitions))

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
        self._paused = False
        self._targets.update(new_targets)
        self._partitions = {
            tp: PartitionState(start[tp], written.get(tp), target_offset=self._targets.get(tp, 0)) for tp in assigned
        }
        for tp in assigned:
            consumer.seek(tp, start[tp])
        self.metrics.assigned_partitions.set(len(self._partitions))
        self._assigned_once.set()
        self._in_group = True
        self._mirror_due = True  # Kafka's offsets may have been reset while the group was empty
        log.info("assigned %d partitions", len(assigned), extra={"partitions": sorted(map(str, assigned))})

    def _invalidate_in_flight(self) -> None:
        """Drop every batch not yet written: a new generation starts."""
        self._generation += 1
        self._pending = PendingBatch()
        while not self._ready.empty():
            self._ready.get_nowait()

    async def _rewind(self) -> None:
        """Drop the batches in flight and re-read every owned partition from its stored offset."""
        assert self._sink is not None
        # awaited before any state changes, as in _on_assigned
        assert self._consumer is not None
        stored = await self._sink.stored_offsets([(tp.topic, tp.partition) for tp in self._partitions])
        self._invalidate_in_flight()
        for tp, partition in self._partitions.items():
            if (tp.topic, tp.partition) in stored:
                partition.written_offset = stored[(tp.topic, tp.partition)]
            partition.seek(partition.position)
            self._consumer.seek(tp, partition.position)

    # -- progress -------------------------------------------------------------------------------------------

    def _written_offset(self, tp: TP) -> int | None:
        partition = self._partitions.get(tp)
        return partition.written_offset if partition is not None else None

    def _caught_up(self) -> bool:
        if not self._assigned_once.is_set() or self._pending.messages or not self._ready.empty():
            return False
        if not self._write_idle.is_set():
            return False
        return all(partition.done for partition in self._partitions.values())

    async def _note_positions(self) -> None:
        """Count the consumer's position as seen: with nothing to fetch, it may have moved past offsets that no
        message holds any more (retention deleted them, the consumer reset to the log start), and a bounded read
        waiting for a message at or past its end would otherwise wait for ever."""
        assert self._consumer is not None
        for tp, partition in list(self._partitions.items()):
            if not partition.done:
                position = await self._consumer.position(tp)
                partition.fetched_to = max(partition.fetched_to, position)

    def _fetched_to_targets(self) -> bool:
        """Every owned partition fetched up to its target: the last batch has nothing to wait for."""
        return self._assigned_once.is_set() and all(p.fetched_to_target for p in self._partitions.values())

    def _update_lag(self) -> None:
        for tp, lag in self.lag().items():
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
            self._partitions[tp].lag_reported = True

    def progress(self) -> dict[TP, tuple[int, int, int]]:
        """Per owned partition: (start, position committed to the datamart, target); target 0 when unbounded."""
        return {tp: (p.start_offset, p.position, p.target_offset) for tp, p in sorted(self._partitions.items())}

    def lag(self) -> dict[TP, int]:
        """Messages not yet committed to the datamart, per owned partition (from the last fetch's high water)."""
        assert self._consumer is not None
        out = {}
        for tp, partition in self._partitions.items():
            high = self._consumer.highwater(tp)
            if high is not None:
                out[tp] = max(0, high - partition.position)
        return out
