"""The emitter's engine: the Kafka producer (librdkafka), the overflow policy and the disk spool.

Encoded records enter through :meth:`Pipeline.submit` from any thread; it never waits on the network. They go
straight to librdkafka (``confluent_kafka.Producer.produce``, one C call that copies the record), whose own threads
batch, compress, send and retry outside the GIL: the serving thread pays 2-3 µs a record (``submit``), and the
work of delivery runs on another core. librdkafka's queue is the memory buffer, and its limits come from
``max_buffer_bytes`` (:func:`producer_settings`), so pending records never take more.

One thread of the pipeline serves librdkafka's callbacks, syncs the spool and replays it. Only failures are
reported back (``delivery.report.only.error``): a report per acknowledged record would need the GIL once per record
on that thread, and a busy serving thread hands the GIL over only every few milliseconds, so acknowledgements
would pile up and fill the buffer. A record handed over, no longer held by librdkafka and never reported failed,
was acknowledged.

The spool takes a record only while the broker is down or the memory buffer is full. It is replayed oldest first by
a second producer with its own share of the budget (:data:`_REPLAY_SHARE`), while new records keep going straight
to the first one when there is room. A segment is removed once all its records are acknowledged, so a killed
process loses nothing that reached the spool. A spilled record may therefore arrive after some logged later; keys
are unique scoring ids, so order matters only for reading comfort. (Closing the memory path until the spool was
empty kept the order, but under steady load the spool never emptied, and every new record took the disk path.)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .contract import DEFAULT_MAX_RECORD_BYTES
from .errors import ConfigError
from .kafka_config import is_secret
from .shared_spool import SharedSpool

__all__ = ["RECORD_OVERHEAD_BYTES", "EmitterStats", "Overflow", "Pipeline", "PipelineConfig", "producer_settings"]

log = logging.getLogger("stream_logger.emitter")

Overflow = Literal["spill", "drop", "block"]
RECORD_OVERHEAD_BYTES = 256
"""Memory librdkafka takes per pending record on top of its value (the message header, the key, the allocator)."""
_PAYLOAD_SHARE = 0.7
"""The share of a producer's budget given to record values; the rest bounds the count of records."""
_REPLAY_SHARE = 8
"""The spool's producer gets ``max_buffer_bytes // _REPLAY_SHARE``; the memory path gets the rest."""
_DROP_WARNING_INTERVAL_S = 10.0
_FSYNC_INTERVAL_S = 1.0
_ADOPT_INTERVAL_S = 5.0
"""How often the pipeline's thread looks for spool slots whose owner is gone (:mod:`.shared_spool`)."""
_POLL_S = 0.05
_PROBE_TIMEOUT_S = 2.0
_BLOCK_RETRY_S = 0.002
_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
_REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)
"""Failures that sending again cannot cure: the record is dropped (with a warning), never spilled."""
_DeliveryCallback = Callable[[KafkaError | None, Message], None]
_REFUSED_CONNECTION = {
    KafkaError._AUTHENTICATION: "authentication failed (SASL)",
    KafkaError._SSL: "TLS failed (is ssl.ca.location the broker's CA?)",
}
"""librdkafka's reports of a broker that answers but refuses the client: retrying cannot cure them."""
_REFUSAL_WARNING_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """What happened to the records given to an emitter (counts since it started; ``queued`` and ``spool_*`` now).

    Every record logged ends up counted once in ``acknowledged``, ``dropped`` or ``invalid``, or is still
    ``queued`` (memory) or in the spool; a spooled record being sent again counts in ``queued`` too until it is
    acknowledged. ``failed`` counts delivery attempts the broker did not acknowledge; those records were then
    spilled (counted again in ``spilled``) or dropped.
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
    client_settings: Mapping[str, str]
    """librdkafka's connection and security settings (``Settings.librdkafka_config()``): SASL, TLS, client.id."""
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


def producer_settings(config: PipelineConfig, budget_bytes: int) -> dict[str, Any]:
    """librdkafka's configuration for ``config``, its queue within ``budget_bytes`` (callbacks not included)."""
    value_bytes = int(budget_bytes * _PAYLOAD_SHARE)
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": "stream-logger-emitter",
        **config.client_settings,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": config.compression or "none",
        "linger.ms": config.linger_ms,
        "batch.size": config.max_batch_bytes,
        # Any record the v1 check accepts may go: the broker refuses what is larger than it allows (dropped).
        "message.max.bytes": max(config.max_batch_bytes, DEFAULT_MAX_RECORD_BYTES) + (64 << 10),
        "message.timeout.ms": max(1, int(config.delivery_timeout_s * 1000)),
        "queue.buffering.max.kbytes": max(1, value_bytes // 1024),
        "queue.buffering.max.messages": max(1, (budget_bytes - value_bytes) // RECORD_OVERHEAD_BYTES),
        "delivery.report.only.error": True,
        "log_level": 2,  # connection failures come through the error callback, once per outage
    }


@dataclass(slots=True)
class _Counts:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    spilled: int = 0
    invalid: int = 0


class Pipeline:
    """Producer, spool and overflow policy for one topic. ``submit``, ``stats`` and ``flush`` are thread-safe."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._counts = _Counts()
        self._early: deque[tuple[bytes, bytes]] = deque()  # logged before start()
        self._early_bytes = 0
        self._spool: SharedSpool | None = None
        needs_spool = config.overflow == "spill" or (config.overflow == "block" and config.block_fallback == "spill")
        if needs_spool and config.spool_dir is not None:
            self._spool = SharedSpool(
                config.spool_dir,
                max_bytes=config.max_spool_bytes,
                segment_bytes=max(64 << 10, min(4 << 20, config.max_buffer_bytes // (2 * _REPLAY_SHARE))),
            )
        self._spool_open = False
        self._spooling = False  # records wait in the spool
        self._broker_up = True  # optimistic until a connection or a delivery fails
        self._unreachable = False  # the last probe of a broker counted down failed
        self._trouble: str | None = None  # set by librdkafka's callbacks, handled by the pipeline's thread
        self._fatal = False
        self._accepting = True  # false once stop() began: new records go to the spool, or are dropped
        self._dropping_all: str | None = None  # why every record is dropped (it could not start after a fork)
        self._producer: Producer | None = None
        self._replayer: Producer | None = None  # sends the spool; created when first needed
        self._alone: Producer | None = None  # sends a spooled record too large for the replayer, one at a time
        replay_budget = config.max_buffer_bytes // _REPLAY_SHARE
        self.budgets = (config.max_buffer_bytes - replay_budget, replay_budget)
        """Bytes of ``max_buffer_bytes`` for the memory path's producer and for the spool's."""
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._close_deadline = 0.0  # set by stop()
        self._last_drop_warning = 0.0
        self._drops_unreported = 0
        self._refusal: str | None = None  # why the broker refuses this producer (authentication, TLS), if it does
        self._last_refusal_warning = 0.0

    # ---- any thread -------------------------------------------------------------------------------------------

    def count_invalid(self) -> None:
        with self._lock:
            self._counts.invalid += 1

    def drop(self, reason: str) -> None:
        """Count a record dropped for ``reason`` (with the rate-limited warning)."""
        with self._lock:
            self._note_drop_locked(reason)

    def submit(self, key: bytes, value: bytes, block_timeout_s: float | None = None) -> None:
        """Queue one encoded record, or apply the overflow policy; waits only when ``block_timeout_s`` is given."""
        with self._lock:
            if self._take_locked(key, value):
                return
            if block_timeout_s is None or not self._accepting:
                self._overflow_locked(key, value, "the memory buffer is full")
                return
        deadline = time.monotonic() + block_timeout_s
        while time.monotonic() < deadline:
            time.sleep(_BLOCK_RETRY_S)
            with self._lock:
                if self._take_locked(key, value):
                    return
        with self._lock:
            self._overflow_locked(key, value, "the memory buffer stayed full")

    def stats(self) -> EmitterStats:
        self._serve_memory_path()  # failure reports waiting to be served would be counted as pending
        with self._lock:
            c = self._counts
            pending = self._pending_locked()
            return EmitterStats(
                queued=len(self._early) + pending,
                sent=c.sent,
                acknowledged=max(0, c.sent - c.failed - pending),
                failed=c.failed,
                dropped=c.dropped,
                spilled=c.spilled,
                invalid=c.invalid,
                spool_records=self._spool.records if self._spool else 0,
                spool_bytes=self._spool.bytes if self._spool else 0,
                torn=self._spool.torn if self._spool else 0,
            )

    def flushed(self) -> bool:
        """Whether every record in memory is acknowledged, and the spool is empty (or the broker found unreachable:
        a broker counted down after a failed delivery is probed first)."""
        with self._lock:
            return not self._early and self._pending_locked() == 0 and (not self._spooling or self._unreachable)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until :meth:`flushed`; ``False`` if ``timeout_s`` passed first (nothing is lost: it stays queued)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.flushed():
            if not self.running or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(0.005)
        return True

    @property
    def refusal(self) -> str | None:
        """Why the broker refuses the producer's connections (authentication failed, TLS verification failed), as
        librdkafka last reported it; None when it does not (or no longer does)."""
        return self._refusal

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _pending_locked(self) -> int:
        """Records held by the producers: waiting, in flight, or failed with the report not yet served."""
        producers = (self._producer, self._replayer, self._alone)
        return sum(len(producer) for producer in producers if producer is not None)

    def _memory_path_open(self) -> bool:
        return self._accepting and (self._broker_up or self._spool is None)

    def _take_locked(self, key: bytes, value: bytes) -> bool:
        """Hand the record to the memory path if it is open and has room; True when it is dealt with."""
        if not self._memory_path_open():
            return False
        producer = self._producer
        if producer is None:  # not started yet
            if self._early_bytes + len(key) + len(value) + RECORD_OVERHEAD_BYTES > self.config.max_buffer_bytes:
                return False
            self._early.append((key, value))
            self._early_bytes += len(key) + len(value) + RECORD_OVERHEAD_BYTES
            return True
        try:
            producer.produce(self.config.topic, value, key)
        except BufferError:
            return False
        except KafkaException as exc:  # refused before queueing, e.g. larger than the producer allows
            self._note_drop_locked(_refusal(exc))
            return True
        self._counts.sent += 1
        return True

    def _failed_locked(self, err: KafkaError) -> bool:
        """Count a delivery the broker did not acknowledge; True when it refused the record for good, which is
        then dropped (sending it again cannot cure it)."""
        self._counts.failed += 1
        if err.code() in _REFUSED:
            self._note_drop_locked(f"the broker refuses the record: {err.str()}")
            return True
        return False

    def _overflow_locked(self, key: bytes, value: bytes, drop_reason: str) -> None:
        if self._dropping_all is not None:
            self._note_drop_locked(self._dropping_all)
            return
        policy = self.config.overflow if self.config.overflow != "block" else self.config.block_fallback
        if policy == "spill" and self._spool is not None:
            if not self._spool_open:
                self._note_drop_locked("the emitter is stopped")
                return
            try:
                spilled = self._spool.append(key, value)
            except OSError as exc:  # a full or failing disk: the record cannot be kept
                self._note_drop_locked(f"the spool cannot be written ({exc})")
                return
            if spilled:
                self._counts.spilled += 1
                self._spooling = True
            else:
                self._note_drop_locked("the spool is full")
            return
        self._note_drop_locked(drop_reason)

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

    # ---- librdkafka's callbacks (served on the pipeline's thread) ---------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = True
            self._trouble = f"the producer failed: {err.str()}"
        elif err.code() in _REFUSED_CONNECTION:  # "delivery suspended" says so, then a reminder once a minute
            if self._refusal is None:
                self._last_refusal_warning = time.monotonic()
            self._refusal = f"Kafka refused the connection: {_REFUSED_CONNECTION[err.code()]}: {err.str()}"
            self._trouble = self._refusal
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._trouble = self._refusal or f"cannot reach {self.config.bootstrap_servers}: {err.str()}"
        elif err.code() != KafkaError._TRANSPORT:  # a single connection lost: librdkafka reconnects
            log.warning("topic %s: producer error: %s", self.config.topic, err.str())

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """A record of the memory path was not acknowledged: spill it (or drop it), and suspend the memory path."""
        if err is None:
            return
        with self._lock:
            refused = self._failed_locked(err)
            if not refused:
                reason = "the emitter stopped before the broker acknowledged" if err.code() in _PURGED else err.str()
                self._overflow_locked(msg.key() or b"", msg.value() or b"", reason)
        if not refused and err.code() not in _PURGED:
            self._trouble = f"delivery failed: {err.str()}"

    # ---- the pipeline's thread --------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the spool, create the producer and start the thread (the broker need not be reachable)."""
        if self._thread is not None:
            return
        producer = self._new_producer(self.budgets[0], self._on_delivery)
        with self._lock:
            if self._spool is not None:
                self._spool.open()
                self._spool_open = True
                self._spooling = self._spool.has_pending
            self._producer = producer
            early, self._early, self._early_bytes = self._early, deque(), 0
            for key, value in early:
                if not self._take_locked(key, value):
                    self._overflow_locked(key, value, "the memory buffer is full")
        self._thread = threading.Thread(
            target=self._run, name=f"stream-logger-emitter:{self.config.topic}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Deliver what can be delivered within ``close_timeout_s`` (what waits in the spool too, while the broker
        is up), spill the rest, close everything."""
        if self._thread is None:
            return
        self._close_deadline = time.monotonic() + self.config.close_timeout_s
        self.flush(self.config.close_timeout_s)  # the thread goes on replaying the spool meanwhile
        self._stopping.set()
        self._thread.join()
        stats = self.stats()
        if stats.spool_records:
            log.warning(
                "topic %s: %d record(s) left in the spool %s; an emitter started on it later sends them",
                self.config.topic,
                stats.spool_records,
                self.config.spool_dir,
            )

    def release_after_fork(self) -> None:
        """In a forked child: let go of what belongs to the parent (its spool slots), touching nothing else.

        librdkafka's threads did not survive the fork; what its queues hold is the parent's to deliver. The
        producers must not be destroyed here either (that would wait for threads the child does not have): the
        caller keeps this pipeline alive and builds a new one.
        """
        if self._spool is not None:
            self._spool.release_after_fork()

    def refuse(self, reason: str) -> None:
        """Drop every record from now on, counted and warned about with ``reason`` (this pipeline cannot run)."""
        with self._lock:
            self._dropping_all = reason
            self._accepting = False
            early, self._early, self._early_bytes = self._early, deque(), 0
            for _ in early:
                self._note_drop_locked(reason)

    def _new_producer(self, budget_bytes: int, on_delivery: _DeliveryCallback | None = None) -> Producer:
        """A producer whose queue fits ``budget_bytes``; ``on_delivery`` hears of its records' failures (unless a
        record names a callback of its own)."""
        callbacks: dict[str, Any] = {"error_cb": self._on_error}
        if on_delivery is not None:  # librdkafka refuses None here
            callbacks["on_delivery"] = on_delivery
        try:
            return Producer(producer_settings(self.config, budget_bytes), **callbacks)
        except KafkaException as exc:  # a setting librdkafka does not know, or a value it refuses
            message = str(exc.args[0].str() if exc.args else exc)
            for name, value in self.config.client_settings.items():
                if is_secret(name) and value:
                    message = message.replace(value, "***")
            raise ConfigError(f"the Kafka client settings are refused by librdkafka: {message}") from None

    def _run(self) -> None:
        backoff_s = 0.2
        error_wait_s = 1.0
        last_sync = last_adoption = time.monotonic()
        while not self._stopping.is_set():
            try:
                producer = self._producer
                assert producer is not None
                producer.poll(_POLL_S)
                if self._trouble is not None:
                    self._suspend()
                if self._spool is not None and time.monotonic() - last_sync >= _FSYNC_INTERVAL_S:
                    last_sync = time.monotonic()
                    with self._lock:
                        self._spool.sync()
                if self._spool is not None and time.monotonic() - last_adoption >= _ADOPT_INTERVAL_S:
                    last_adoption = time.monotonic()
                    self._adopt_orphans(self._spool)
                if self._spooling or not self._broker_up:
                    if self._resume():
                        backoff_s = 0.2
                    else:
                        self._stopping.wait(backoff_s * random.uniform(0.5, 1.5))
                        backoff_s = min(backoff_s * 2, 5.0)
                error_wait_s = 1.0
            except Exception:  # a failing disk, say: this thread alone serves librdkafka and the spool, so it goes on
                log.exception(
                    "topic %s: the emitter's thread hit an error; going on in %.0f s", self.config.topic, error_wait_s
                )
                self._stopping.wait(error_wait_s)
                error_wait_s = min(error_wait_s * 2, 60.0)
        self._shut_down()

    def _adopt_orphans(self, spool: SharedSpool) -> None:
        """Take over the spool slots of processes that are gone; their records are then replayed from here."""
        orphans = spool.find_orphans()  # reads and locks other folders only: no need to hold up log() meanwhile
        if not orphans:
            return
        with self._lock:
            spool.adopt(orphans)
            self._spooling = True
        log.info(
            "topic %s: sending %d record(s) left in the spool by %d process(es) that are gone: %s",
            self.config.topic,
            sum(o.records for o in orphans),
            len(orphans),
            ", ".join(o.directory.name for o in orphans),
        )

    def _suspend(self) -> None:
        """The broker is unreachable or refused a record: route new records to the spool, spill the queued ones."""
        reason, self._trouble = self._trouble, None
        with self._lock:
            changed = self._broker_up
            self._broker_up = False
            old, old_replayer = self._producer, self._replayer
            if self._fatal:  # either producer may have failed: both are replaced
                self._fatal = False
                self._producer = self._new_producer(self.budgets[0], self._on_delivery)
                self._replayer = None
        if changed:
            log.warning("topic %s: delivery suspended, %s", self.config.topic, reason)
        assert old is not None
        if old is not self._producer:  # librdkafka cannot go on: everything it holds is spilled
            _purge(old, in_flight=True)
            if old_replayer is not None:  # spooled records stay in their segments
                _purge(old_replayer, in_flight=True)
        elif self._spool is not None:  # what waits in librdkafka's queue goes to the spool; in flight is awaited
            _purge(old, in_flight=False)

    def _resume(self) -> bool:
        """Probe the broker if it was down, then replay the spool; ``False`` if the broker is still unreachable."""
        producer = self._producer
        assert producer is not None
        if not self._broker_up:
            try:
                producer.list_topics(self.config.topic, timeout=_PROBE_TIMEOUT_S)
            except KafkaException:
                with self._lock:
                    self._unreachable = True
                refusal, now = self._refusal, time.monotonic()
                if refusal is not None and now - self._last_refusal_warning >= _REFUSAL_WARNING_INTERVAL_S:
                    self._last_refusal_warning = now
                    log.warning("topic %s: delivery still suspended, %s", self.config.topic, refusal)
                return False
            with self._lock:
                self._broker_up = True
                self._unreachable = False
                self._refusal = None
            log.info("topic %s: the broker is reachable again", self.config.topic)
        return self._replay_spool()

    def _replay_spool(self) -> bool:
        """Send the spool's segments oldest first, removing them once acknowledged; ``False`` on failure."""
        spool = self._spool
        if spool is None:
            return True
        while not self._stopping.is_set():
            with self._lock:
                segments = spool.ready_segments()
                if not segments:
                    self._spooling = False
                    return True
            handed, failure = self._deliver(spool, segments)
            if failure is not None and self._stopping.is_set():
                return True  # the segments stay; an emitter started later sends them
            if failure is not None:
                # The segments are sent again later: records acknowledged in them become duplicates, which the
                # datamart collapses by scoring_id.
                with self._lock:
                    self._broker_up = False
                log.warning("topic %s: spool replay failed, %s", self.config.topic, failure)
                return False
            with self._lock:
                for segment in handed:
                    spool.remove(segment)
        return True

    def _deliver(self, spool: SharedSpool, segments: list[Path]) -> tuple[list[Path], str | None]:
        """Send whole segments, oldest first, about the replay budget's worth, and wait for their acknowledgement.

        Returns the segments sent, and what went wrong (None: all acknowledged). The spool's producer holds nothing
        else: once it is empty, these were acknowledged.
        """
        if self._replayer is None:
            self._replayer = self._new_producer(self.budgets[1])
        producer = self._replayer
        failures: list[str] = []
        on_delivery = self._replay_reporter(failures)
        handed: list[Path] = []
        handed_bytes = 0
        for segment in segments:
            if handed and handed_bytes >= self.budgets[1]:
                break
            for key, value in spool.read(segment).records:
                failure = self._produce_waiting(producer, key, value, on_delivery)
                if failure is not None:
                    return handed, failure
                handed_bytes += len(key) + len(value) + RECORD_OVERHEAD_BYTES
            handed.append(segment)
        return handed, self._acknowledged(producer, failures)

    def _replay_reporter(self, failures: list[str]) -> _DeliveryCallback:
        """The delivery callback of spooled records: one the broker refuses for good is dropped (and counted); any
        other failure goes to ``failures``, and its segment is sent again later."""

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                return
            with self._lock:
                if self._failed_locked(err):
                    return
            failures.append(err.str())

        return on_delivery

    def _acknowledged(self, producer: Producer, failures: list[str]) -> str | None:
        """Wait until ``producer`` holds nothing (all acknowledged: None), a delivery fails (``failures`` filled
        by its callback), ``delivery_timeout_s`` passes, or the emitter stops; what went wrong."""
        deadline = time.monotonic() + self.config.delivery_timeout_s
        while len(producer) and not failures and time.monotonic() < deadline:
            if self._stopping.is_set():
                return "the emitter is stopping"
            producer.poll(_POLL_S)
            self._serve_memory_path()
        if failures:
            return failures[0]
        return "not acknowledged in time" if len(producer) else None

    def _serve_memory_path(self) -> None:
        producer = self._producer
        if producer is not None:
            producer.poll(0)

    def _produce_waiting(self, producer: Producer, key: bytes, value: bytes, on_delivery: Any) -> str | None:
        """Hand one spooled record to the spool's producer, waiting for room; what went wrong, or None.

        A record larger than that producer's whole budget is sent alone (:meth:`_send_alone`) and acknowledged
        before the next is handed over: its segment may be removed as soon as the spool's producer is empty.
        """
        while not self._stopping.is_set():
            try:
                self._produce_counted(producer, key, value, on_delivery)
            except BufferError:
                if not len(producer):
                    return self._send_alone(key, value)
                producer.poll(_POLL_S)
                self._serve_memory_path()
                continue
            return None
        return "the emitter is stopping"

    def _produce_counted(
        self, producer: Producer, key: bytes, value: bytes, on_delivery: _DeliveryCallback | None = None
    ) -> None:
        """Hand a spooled record to ``producer`` and count it sent; one refused before queueing (larger than the
        producer allows) is dropped and counted. Raises BufferError when the producer has no room."""
        try:
            producer.produce(self.config.topic, value, key, on_delivery=on_delivery)
        except KafkaException as exc:
            with self._lock:
                self._note_drop_locked(_refusal(exc))
            return
        with self._lock:
            self._counts.sent += 1

    def _send_alone(self, key: bytes, value: bytes) -> str | None:
        """Send one spooled record through a producer of its own, sized for it, and wait for the broker's
        acknowledgement; what went wrong, or None (also when the broker refuses the record for good: dropped).

        Only a record larger than the spool's producer can hold comes here, one at a time: memory for pending
        records may then pass ``max_buffer_bytes`` by that one record.
        """
        failures: list[str] = []
        budget = int((len(key) + len(value) + RECORD_OVERHEAD_BYTES) / _PAYLOAD_SHARE) + (64 << 10)
        producer = self._new_producer(budget, self._replay_reporter(failures))
        with self._lock:
            self._alone = producer  # counted as pending meanwhile
        try:
            self._produce_counted(producer, key, value)
            return self._acknowledged(producer, failures)  # None at once if it was refused before queueing
        finally:
            _purge(producer, in_flight=True)  # only when the emitter stops first; the record stays in the spool
            with self._lock:
                self._alone = None

    def _shut_down(self) -> None:
        producer = self._producer
        assert producer is not None
        deadline = self._close_deadline
        while len(producer) and time.monotonic() < deadline:
            producer.flush(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        with self._lock:
            self._accepting = False
        # What the broker never acknowledged is spilled (a duplicate is possible only if an ack was lost). Spooled
        # records being replayed stay in their segments.
        _purge(producer, in_flight=True)
        if self._replayer is not None:
            _purge(self._replayer, in_flight=True)
        with self._lock:
            if self._spool is not None and self._spool_open:
                self._spool.close()
                self._spool_open = False


def _purge(producer: Producer, *, in_flight: bool) -> None:
    """Fail what ``producer`` holds (its failure callback spills or drops it) and serve those callbacks.

    Without ``in_flight``, records already sent stay in flight: their acknowledgement or failure comes later.
    """
    producer.purge(in_queue=True, in_flight=in_flight, blocking=True)
    while producer.poll(0):
        pass
    deadline = time.monotonic() + 5.0
    while in_flight and len(producer) and time.monotonic() < deadline:
        producer.poll(0.01)


def _refusal(exc: KafkaException) -> str:
    """Why ``produce()`` refused a record before queueing it (e.g. larger than the producer allows)."""
    err = exc.args[0] if exc.args else None
    return f"the producer refuses the record: {err.str() if isinstance(err, KafkaError) else exc}"
