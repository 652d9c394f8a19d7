"""The emitter's engine: the Kafka producer (librdkafka), the overflow policy and the disk spool.

Encoded records enter through :meth:`Delivery.submit` from any thread; it never waits on the network. They go
straight to librdkafka (``confluent_kafka.Producer.produce``, one C call that copies the record), whose own threads
batch, compress, send and retry outside the GIL: the serving thread pays 2-3 µs a record (``submit``), and the
work of delivery runs on another core. librdkafka's queue is the memory buffer, and its limits come from
``max_buffer_bytes`` (:func:`~stream_logger.producer.producer_settings`), so pending records never take more.

One thread of the delivery serves librdkafka's callbacks, syncs the spool and replays it. Only failures are
reported back (``delivery.report.only.error``): a report per acknowledged record would need the GIL once per record
on that thread, and a busy serving thread hands the GIL over only every few milliseconds, so acknowledgements
would pile up and fill the buffer. A record handed over, no longer held by librdkafka and never reported failed,
was acknowledged.

Where a new record goes (held until start, the producer, the overflow policy) is :class:`Intake`, what is known of
the broker is :class:`Broker`, both in one :class:`DeliveryState`.

The spool takes a record only while the broker is down or the memory buffer is full. It is replayed oldest first by
a second producer with its own share of the budget (:mod:`.spool_replay`), while new records keep going straight
to the first one when there is room. A segment is removed once all its records are acknowledged, so a killed
process loses nothing that reached the spool. A spilled record may therefore arrive after some logged later; keys
are unique scoring ids, so order matters only for reading comfort. Keeping the order would mean closing the memory
path until the spool is empty, which under steady load it never is: every new record would take the disk path.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .delivery_counts import DeliveryCounts, EmitterStats, refused_before_queueing
from .lifecycle import Lifecycle
from .producer import (
    PURGED,
    RECORD_OVERHEAD_BYTES,
    REFUSED_CONNECTION,
    REPLAY_SHARE,
    DeliveryCallback,
    DeliveryConfig,
    Overflow,
    new_producer,
    purge,
)
from .shared_spool import SharedSpool
from .spool_replay import POLL_S, SpoolReplay

__all__ = ["Broker", "Delivery", "DeliveryConfig", "DeliveryState", "EmitterStats", "Intake", "Overflow"]

log = logging.getLogger("stream_logger.emitter")

_FSYNC_INTERVAL_S = 1.0
_ADOPT_INTERVAL_S = 5.0
"""How often the delivery's thread looks for spool slots whose owner is gone (:mod:`.shared_spool`)."""
_PROBE_TIMEOUT_S = 2.0
_BLOCK_RETRY_S = 0.002
_REFUSAL_WARNING_INTERVAL_S = 60.0


class Intake(enum.Enum):
    """Where :meth:`Delivery.submit` takes a new record."""

    HOLD = "hold"
    """Not started: records wait in memory (up to ``max_buffer_bytes``) and go to the producer at start()."""
    PRODUCER = "producer"
    """Running: to the memory path's producer while the broker is up and it has room, else the overflow policy."""
    OVERFLOW = "overflow"
    """Stopping, the producer drained: every record takes the overflow policy (the spool is still open)."""
    CLOSED = "closed"
    """Stopped, the spool closed: every record is dropped."""
    DROP_ALL = "drop_all"
    """This delivery cannot run (it could not start in a forked process): every record is dropped, with the reason."""


class Broker(enum.Enum):
    """What the delivery knows of the broker."""

    UP = "up"
    """Believed reachable: optimistic until a connection or a delivery fails."""
    SUSPENDED = "suspended"
    """A connection or a delivery failed: new records go to the spool until a probe finds the broker again."""
    UNREACHABLE = "unreachable"
    """Suspended, and the last probe failed too."""


@dataclass(slots=True)
class DeliveryState:
    """What ``submit()`` and the delivery's thread decide from; changed under the delivery's lock."""

    intake: Intake = Intake.HOLD
    broker: Broker = Broker.UP
    spool_has_records: bool = False
    """Records wait in the spool (to replay)."""
    drop_all_reason: str | None = None
    """With :attr:`Intake.DROP_ALL`: why every record is dropped."""
    connection_refused: str | None = None
    """Why the broker refuses the producer's connections (authentication, TLS), if it does."""

    @property
    def accepting(self) -> bool:
        """New records may still go to a producer (now or at start)."""
        return self.intake in (Intake.HOLD, Intake.PRODUCER)

    @property
    def spool_open(self) -> bool:
        return self.intake in (Intake.PRODUCER, Intake.OVERFLOW)


@dataclass(frozen=True, slots=True)
class _SuspendRequest:
    """Left by librdkafka's callbacks for the delivery's thread: suspend delivery, and why."""

    reason: str
    replace_producer: bool
    """The producer failed for good (a fatal error): the memory path's and the spool's are both replaced."""


class Delivery:
    """Producer, spool and overflow policy for one topic. ``submit``, ``stats`` and ``flush`` are thread-safe.

    ``start()``/``stop()`` follow :mod:`stream_logger.lifecycle`; :attr:`state` says where records go.
    """

    def __init__(self, config: DeliveryConfig) -> None:
        self.config = config
        self._lifecycle = Lifecycle("delivery")
        self._counts = DeliveryCounts(config.topic)
        self._lock = self._counts.lock  # one lock for the counts, the state and the spool
        self._state = DeliveryState()
        self._held: deque[tuple[bytes, bytes]] = deque()  # logged before start()
        self._held_bytes = 0
        self._spool: SharedSpool | None = None
        if config.spills and config.spool_dir is not None:
            self._spool = SharedSpool(
                config.spool_dir,
                max_bytes=config.max_spool_bytes,
                segment_bytes=max(64 << 10, min(4 << 20, config.max_buffer_bytes // (2 * REPLAY_SHARE))),
            )
        self._suspend_request: _SuspendRequest | None = None  # set by librdkafka's callbacks, served by the thread
        self._memory_producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._thread_stop = threading.Event()
        self._wake = threading.Event()  # ends the thread's back-off wait early (stop() sets it)
        self._replay: SpoolReplay | None = None
        if self._spool is not None:
            self._replay = SpoolReplay(
                config, self._spool, self._counts, self._new_producer, self._thread_stop, self._serve_memory_path
            )
        self._close_deadline = 0.0  # set by stop()
        self._last_refusal_warning = 0.0

    def __del__(self) -> None:
        # Its thread holds it while it runs: this warns only once that thread ended without stop().
        if hasattr(self, "_lifecycle"):
            self._lifecycle.warn_if_running(self, f" (topic {self.config.topic})")

    # ---- any thread -------------------------------------------------------------------------------------------

    @property
    def state(self) -> DeliveryState:
        """Where new records go and what is known of the broker (read only; it changes as delivery goes on)."""
        return self._state

    def count_invalid(self) -> None:
        with self._lock:
            self._counts.invalid += 1

    def count_naive_timestamp(self) -> int:
        """Count a record whose timestamp was taken as UTC; returns how many so far."""
        with self._lock:
            self._counts.naive_timestamps += 1
            return self._counts.naive_timestamps

    def drop(self, reason: str) -> None:
        """Count a record dropped for ``reason`` (with the rate-limited warning)."""
        with self._lock:
            self._counts.note_drop_locked(reason)

    def submit(self, key: bytes, value: bytes, block_timeout_s: float | None = None) -> None:
        """Queue one encoded record, or apply the overflow policy; waits only when ``block_timeout_s`` is given."""
        with self._lock:
            if self._enqueue_locked(key, value):
                return
            if block_timeout_s is None or not self._state.accepting:
                self._overflow_locked(key, value, "the memory buffer is full")
                return
        deadline = time.monotonic() + block_timeout_s
        while time.monotonic() < deadline:
            time.sleep(_BLOCK_RETRY_S)
            with self._lock:
                if self._enqueue_locked(key, value):
                    return
        with self._lock:
            self._overflow_locked(key, value, "the memory buffer stayed full")

    def stats(self) -> EmitterStats:
        self._serve_memory_path()  # failure reports waiting to be served would be counted as pending
        with self._lock:
            spool = self._spool
            return self._counts.stats_locked(
                held=len(self._held),
                pending=self._pending_locked(),
                spool_records=spool.records if spool else 0,
                spool_bytes=spool.bytes if spool else 0,
                torn=spool.torn if spool else 0,
            )

    def flushed(self) -> bool:
        """Whether every record in memory is acknowledged, and the spool is empty (or the broker found unreachable:
        a broker counted down after a failed delivery is probed first)."""
        with self._lock:
            state = self._state
            return (
                not self._held
                and self._pending_locked() == 0
                and (not state.spool_has_records or state.broker is Broker.UNREACHABLE)
            )

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
        return self._state.connection_refused

    @property
    def running(self) -> bool:
        """The delivery's thread is alive (from start() until stop() has closed everything)."""
        return self._thread is not None and self._thread.is_alive()

    def _pending_locked(self) -> int:
        """Records held by the producers: waiting, in flight, or failed with the report not yet served."""
        memory = len(self._memory_producer) if self._memory_producer is not None else 0
        return memory + (self._replay.pending_locked() if self._replay is not None else 0)

    def _enqueue_locked(self, key: bytes, value: bytes) -> bool:
        """Hand the record to the memory path (held until start() before it) if it is open and has room; True when
        it is dealt with."""
        state = self._state
        if state.intake is Intake.HOLD:
            size = len(key) + len(value) + RECORD_OVERHEAD_BYTES
            if self._held_bytes + size > self.config.max_buffer_bytes:
                return False
            self._held.append((key, value))
            self._held_bytes += size
            return True
        producer = self._memory_producer
        if state.intake is not Intake.PRODUCER or producer is None:
            return False
        if state.broker is not Broker.UP and self._spool is not None:  # suspended: new records go to the spool
            return False
        try:
            producer.produce(self.config.topic, value, key)
        except BufferError:
            return False
        except KafkaException as exc:  # refused before queueing, e.g. larger than the producer allows
            self._counts.note_drop_locked(refused_before_queueing(exc))
            return True
        self._counts.sent += 1
        return True

    def _overflow_locked(self, key: bytes, value: bytes, drop_reason: str) -> None:
        state = self._state
        if state.drop_all_reason is not None:
            self._counts.note_drop_locked(state.drop_all_reason)
            return
        if self.config.spills and self._spool is not None:
            if not state.spool_open:
                self._counts.note_drop_locked(
                    "the emitter is not started" if state.intake is Intake.HOLD else "the emitter is stopped"
                )
                return
            try:
                spilled = self._spool.append(key, value)
            except OSError as exc:  # a full or failing disk: the record cannot be kept
                self._counts.note_drop_locked(f"the spool cannot be written ({exc})")
                return
            if spilled:
                self._counts.spilled += 1
                state.spool_has_records = True
            else:
                self._counts.note_drop_locked("the spool is full")
            return
        self._counts.note_drop_locked(drop_reason)

    # ---- librdkafka's callbacks (served on the delivery's thread, and by stats() on any) -----------------------

    def _request_suspension(self, reason: str, *, replace_producer: bool = False) -> None:
        earlier = self._suspend_request
        replace_producer = replace_producer or (earlier is not None and earlier.replace_producer)
        self._suspend_request = _SuspendRequest(reason, replace_producer)

    def _on_error(self, err: KafkaError) -> None:
        state = self._state
        if err.fatal():
            self._request_suspension(f"the producer failed: {err.str()}", replace_producer=True)
        elif err.code() in REFUSED_CONNECTION:  # "delivery suspended" says so, then a reminder once a minute
            if state.connection_refused is None:
                self._last_refusal_warning = time.monotonic()
            state.connection_refused = f"Kafka refused the connection: {REFUSED_CONNECTION[err.code()]}: {err.str()}"
            self._request_suspension(state.connection_refused)
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._request_suspension(
                state.connection_refused or f"cannot reach {self.config.bootstrap_servers}: {err.str()}"
            )
        elif err.code() != KafkaError._TRANSPORT:  # a single connection lost: librdkafka reconnects
            log.warning("topic %s: producer error: %s", self.config.topic, err.str())

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """A record of the memory path was not acknowledged: spill it (or drop it), and suspend the memory path."""
        if err is None:
            return
        with self._lock:
            refused = self._counts.note_failure_locked(err)
            if not refused:
                reason = "the emitter stopped before the broker acknowledged" if err.code() in PURGED else err.str()
                self._overflow_locked(msg.key() or b"", msg.value() or b"", reason)
        if not refused and err.code() not in PURGED:
            self._request_suspension(f"delivery failed: {err.str()}")

    # ---- the delivery's thread --------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the spool, create the producer and start the thread (the broker need not be reachable).

        Calling it again does nothing; after :meth:`stop` it raises :class:`~stream_logger.errors.LifecycleError`.
        """
        if not self._lifecycle.may_start():
            return
        producer = self._new_producer(self.config.memory_budget_bytes, self._on_delivery)
        with self._lock:
            if self._spool is not None:
                self._spool.open()
                self._state.spool_has_records = self._spool.has_pending
            self._memory_producer = producer
            if self._state.intake is Intake.HOLD:
                self._state.intake = Intake.PRODUCER
            held, self._held, self._held_bytes = self._held, deque(), 0
            for key, value in held:
                if not self._enqueue_locked(key, value):
                    self._overflow_locked(key, value, "the memory buffer is full")
        self._thread = threading.Thread(
            target=self._run, name=f"stream-logger-emitter:{self.config.topic}", daemon=True
        )
        self._thread.start()
        self._lifecycle.started()

    def stop(self) -> None:
        """Deliver what can be delivered within ``close_timeout_s`` (what waits in the spool too, while the broker
        is up), spill the rest, close everything. Idempotent; stopping a delivery never started only marks it."""
        if not self._lifecycle.may_stop():
            return
        assert self._thread is not None
        try:
            self._close_deadline = time.monotonic() + self.config.close_timeout_s
            with self._lock:  # the last failed probe may be seconds old: the broker may be back, so probe it now
                if self._state.broker is Broker.UNREACHABLE:
                    self._state.broker = Broker.SUSPENDED
            self._wake.set()
            self.flush(self.config.close_timeout_s)  # the thread goes on replaying the spool meanwhile
            self._thread_stop.set()
            self._wake.set()
            self._thread.join()
        finally:
            self._lifecycle.stopped()
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
        caller keeps this delivery alive and builds a new one. It is never stopped in the child, nor warned about.
        """
        self._lifecycle.released()
        if self._spool is not None:
            self._spool.release_after_fork()

    def refuse(self, reason: str) -> None:
        """Drop every record from now on, counted and warned about with ``reason`` (this delivery cannot run)."""
        with self._lock:
            self._state.drop_all_reason = reason
            self._state.intake = Intake.DROP_ALL
            held, self._held, self._held_bytes = self._held, deque(), 0
            for _ in held:
                self._counts.note_drop_locked(reason)

    def _new_producer(self, budget_bytes: int, on_delivery: DeliveryCallback | None = None) -> Producer:
        return new_producer(self.config, budget_bytes, self._on_error, on_delivery)

    def _run(self) -> None:
        backoff_s = 0.2
        error_wait_s = 1.0
        last_sync = last_adoption = time.monotonic()
        while not self._thread_stop.is_set():
            try:
                producer = self._memory_producer
                assert producer is not None
                producer.poll(POLL_S)
                if self._suspend_request is not None:
                    self._suspend()
                if self._spool is not None and time.monotonic() - last_sync >= _FSYNC_INTERVAL_S:
                    last_sync = time.monotonic()
                    with self._lock:
                        self._spool.sync()
                if self._spool is not None and time.monotonic() - last_adoption >= _ADOPT_INTERVAL_S:
                    last_adoption = time.monotonic()
                    self._adopt_orphans(self._spool)
                if self._state.spool_has_records or self._state.broker is not Broker.UP:
                    if self._resume():
                        backoff_s = 0.2
                    else:
                        self._wait(backoff_s * random.uniform(0.5, 1.5))
                        backoff_s = min(backoff_s * 2, 5.0)
                error_wait_s = 1.0
            except Exception:  # a failing disk, say: this thread alone serves librdkafka and the spool, so it goes on
                log.exception(
                    "topic %s: the emitter's thread hit an error; going on in %.0f s", self.config.topic, error_wait_s
                )
                self._wait(error_wait_s)
                error_wait_s = min(error_wait_s * 2, 60.0)
        self._shut_down()

    def _wait(self, seconds: float) -> None:
        """Sleep on the delivery's thread, ending early when stop() wakes it."""
        if self._wake.wait(seconds):
            self._wake.clear()

    def _adopt_orphans(self, spool: SharedSpool) -> None:
        """Take over the spool slots of processes that are gone; their records are then replayed from here."""
        orphans = spool.find_orphans()  # reads and locks other folders only: no need to hold up log() meanwhile
        if not orphans:
            return
        with self._lock:
            spool.adopt(orphans)
            self._state.spool_has_records = True
        log.info(
            "topic %s: sending %d record(s) left in the spool by %d process(es) that are gone: %s",
            self.config.topic,
            sum(o.records for o in orphans),
            len(orphans),
            ", ".join(o.directory.name for o in orphans),
        )

    def _suspend(self) -> None:
        """The broker is unreachable or refused a record: route new records to the spool, spill the queued ones."""
        request, self._suspend_request = self._suspend_request, None
        assert request is not None
        with self._lock:
            changed = self._state.broker is Broker.UP
            if changed:
                self._state.broker = Broker.SUSPENDED
            old, old_replay = self._memory_producer, None
            if request.replace_producer:  # either producer may have failed: both are replaced
                self._memory_producer = self._new_producer(self.config.memory_budget_bytes, self._on_delivery)
                if self._replay is not None:
                    old_replay = self._replay.discard_producer_locked()
        if changed:
            log.warning("topic %s: delivery suspended, %s", self.config.topic, request.reason)
        assert old is not None
        if old is not self._memory_producer:  # librdkafka cannot go on: everything it holds is spilled
            purge(old, in_flight=True)
            if old_replay is not None:  # spooled records stay in their segments
                purge(old_replay, in_flight=True)
        elif self._spool is not None:  # what waits in librdkafka's queue goes to the spool; in flight is awaited
            purge(old, in_flight=False)

    def _resume(self) -> bool:
        """Probe the broker if it was down, then replay the spool; ``False`` if the broker is still unreachable."""
        producer = self._memory_producer
        assert producer is not None
        if self._state.broker is not Broker.UP:
            try:
                producer.list_topics(self.config.topic, timeout=_PROBE_TIMEOUT_S)
            except KafkaException:
                with self._lock:
                    self._state.broker = Broker.UNREACHABLE
                refusal, now = self._state.connection_refused, time.monotonic()
                if refusal is not None and now - self._last_refusal_warning >= _REFUSAL_WARNING_INTERVAL_S:
                    self._last_refusal_warning = now
                    log.warning("topic %s: delivery still suspended, %s", self.config.topic, refusal)
                return False
            with self._lock:
                self._state.broker = Broker.UP
                self._state.connection_refused = None
            log.info("topic %s: the broker is reachable again", self.config.topic)
        return self._replay_spool()

    def _replay_spool(self) -> bool:
        """Send the spool's segments oldest first, removing them once acknowledged; ``False`` on failure."""
        if self._replay is None:
            return True
        failure = self._replay.send_all(self._mark_spool_empty_locked)
        if failure is None:
            return True
        with self._lock:
            self._state.broker = Broker.SUSPENDED
        log.warning("topic %s: spool replay failed, %s", self.config.topic, failure)
        return False

    def _mark_spool_empty_locked(self) -> None:
        self._state.spool_has_records = False

    def _serve_memory_path(self) -> None:
        producer = self._memory_producer
        if producer is not None:
            producer.poll(0)

    def _shut_down(self) -> None:
        producer = self._memory_producer
        assert producer is not None
        deadline = self._close_deadline
        while len(producer) and time.monotonic() < deadline:
            producer.flush(min(POLL_S, max(0.0, deadline - time.monotonic())))
        with self._lock:
            if self._state.intake is Intake.PRODUCER:
                self._state.intake = Intake.OVERFLOW
        # What the broker never acknowledged is spilled (a duplicate is possible only if an ack was lost). Spooled
        # records being replayed stay in their segments.
        purge(producer, in_flight=True)
        if self._replay is not None:
            self._replay.purge()
        with self._lock:
            if self._state.intake is Intake.OVERFLOW:
                self._state.intake = Intake.CLOSED
                if self._spool is not None:
                    self._spool.close()
