"""Sending the spool again: segments oldest first, through a producer of their own, each segment removed once
every record in it is acknowledged (so a killed process loses nothing that reached the spool).

The replay's producer holds at most ``replay_budget_bytes`` (:class:`~stream_logger.producer.DeliveryConfig`); a
record larger than that goes through a producer sized for it, alone, and is acknowledged before the next is
handed over. It all runs on the delivery's thread (:class:`~stream_logger.delivery.Delivery`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .delivery_counts import DeliveryCounts, refused_before_queueing
from .producer import PAYLOAD_SHARE, RECORD_OVERHEAD_BYTES, DeliveryCallback, DeliveryConfig, purge
from .shared_spool import SharedSpool

__all__ = ["POLL_S", "ProducerFactory", "SpoolReplay"]

POLL_S = 0.05
"""How long the delivery's thread waits on librdkafka at a time."""

ProducerFactory = Callable[[int, DeliveryCallback | None], Producer]
"""Makes a producer whose queue fits a budget in bytes, reporting failures to a callback."""


class SpoolReplay:
    """Replays ``spool`` to ``config.topic``. ``stop`` set means the emitter is stopping: what is not acknowledged
    by then stays in its segments; ``serve_memory_path`` keeps the memory path's callbacks served meanwhile."""

    def __init__(
        self,
        config: DeliveryConfig,
        spool: SharedSpool,
        counts: DeliveryCounts,
        new_producer: ProducerFactory,
        stop: threading.Event,
        serve_memory_path: Callable[[], None],
    ) -> None:
        self.config = config
        self._spool = spool
        self._counts = counts
        self._new_producer = new_producer
        self._stop = stop
        self._serve_memory_path = serve_memory_path
        self._producer: Producer | None = None  # created when first needed
        self._oversized_producer: Producer | None = None  # sends a record too large for the replay's producer

    def pending_locked(self) -> int:
        """Records its producers hold: waiting, in flight, or failed with the report not yet served."""
        producers = (self._producer, self._oversized_producer)
        return sum(len(producer) for producer in producers if producer is not None)

    def discard_producer_locked(self) -> Producer | None:
        """Stop using the replay's producer (it failed for good); the old one, for the caller to purge."""
        old, self._producer = self._producer, None
        return old

    def purge(self) -> None:
        """Fail what the replay's producer holds (at stop): those records stay in their segments."""
        if self._producer is not None:
            purge(self._producer, in_flight=True)

    def send_all(self, mark_empty_locked: Callable[[], None]) -> str | None:
        """Send every ready segment, oldest first, removing each once acknowledged; what went wrong, or None (the
        spool is empty: ``mark_empty_locked`` was called under the lock, or the emitter is stopping)."""
        spool = self._spool
        while not self._stop.is_set():
            with self._counts.lock:
                segments = spool.ready_segments()
                if not segments:
                    mark_empty_locked()
                    return None
            handed, failure = self._deliver(segments)
            if failure is not None:
                # The segments are sent again later: records acknowledged in them become duplicates, which the
                # datamart collapses by scoring_id.
                return None if self._stop.is_set() else failure
            with self._counts.lock:
                for segment in handed:
                    spool.remove(segment)
        return None

    def _deliver(self, segments: list[Path]) -> tuple[list[Path], str | None]:
        """Send whole segments, oldest first, about the replay budget's worth, and wait for their acknowledgement.

        Returns the segments sent, and what went wrong (None: all acknowledged). The replay's producer holds
        nothing else: once it is empty, these were acknowledged.
        """
        budget_bytes = self.config.replay_budget_bytes
        if self._producer is None:
            self._producer = self._new_producer(budget_bytes, None)
        producer = self._producer
        failures: list[str] = []
        on_delivery = self._reporter(failures)
        handed: list[Path] = []
        handed_bytes = 0
        for segment in segments:
            if handed and handed_bytes >= budget_bytes:
                break
            for key, value in self._spool.read(segment).records:
                failure = self._produce_waiting(producer, key, value, on_delivery)
                if failure is not None:
                    return handed, failure
                handed_bytes += len(key) + len(value) + RECORD_OVERHEAD_BYTES
            handed.append(segment)
        return handed, self._acknowledged(producer, failures)

    def _reporter(self, failures: list[str]) -> DeliveryCallback:
        """The delivery callback of spooled records: one the broker refuses for good is dropped (and counted); any
        other failure goes to ``failures``, and its segment is sent again later."""

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                return
            with self._counts.lock:
                if self._counts.note_failure_locked(err):
                    return
            failures.append(err.str())

        return on_delivery

    def _acknowledged(self, producer: Producer, failures: list[str]) -> str | None:
        """Wait until ``producer`` holds nothing (all acknowledged: None), a delivery fails (``failures`` filled
        by its callback), ``delivery_timeout_s`` passes, or the emitter stops; what went wrong."""
        deadline = time.monotonic() + self.config.delivery_timeout_s
        while len(producer) and not failures and time.monotonic() < deadline:
            if self._stop.is_set():
                return "the emitter is stopping"
            producer.poll(POLL_S)
            self._serve_memory_path()
        if failures:
            return failures[0]
        return "not acknowledged in time" if len(producer) else None

    def _produce_waiting(
        self, producer: Producer, key: bytes, value: bytes, on_delivery: DeliveryCallback
    ) -> str | None:
        """Hand one spooled record to the replay's producer, waiting for room; what went wrong, or None.

        A record larger than that producer's whole budget is sent alone (:meth:`_send_oversized`) and acknowledged
        before the next is handed over: its segment may be removed as soon as the replay's producer is empty.
        """
        while not self._stop.is_set():
            try:
                self._produce_counted(producer, key, value, on_delivery)
            except BufferError:
                if not len(producer):
                    return self._send_oversized(key, value)
                producer.poll(POLL_S)
                self._serve_memory_path()
                continue
            return None
        return "the emitter is stopping"

    def _produce_counted(
        self, producer: Producer, key: bytes, value: bytes, on_delivery: DeliveryCallback | None = None
    ) -> None:
        """Hand a spooled record to ``producer`` and count it sent; one refused before queueing (larger than the
        producer allows) is dropped and counted. Raises BufferError when the producer has no room."""
        try:
            producer.produce(self.config.topic, value, key, on_delivery=on_delivery)
        except KafkaException as exc:
            with self._counts.lock:
                self._counts.note_drop_locked(refused_before_queueing(exc))
            return
        with self._counts.lock:
            self._counts.sent += 1

    def _send_oversized(self, key: bytes, value: bytes) -> str | None:
        """Send one spooled record through a producer of its own, sized for it, and wait for the broker's
        acknowledgement; what went wrong, or None (also when the broker refuses the record for good: dropped).

        Only a record larger than the replay's producer can hold comes here, one at a time: memory for pending
        records may then pass ``max_buffer_bytes`` by that one record.
        """
        failures: list[str] = []
        budget = int((len(key) + len(value) + RECORD_OVERHEAD_BYTES) / PAYLOAD_SHARE) + (64 << 10)
        producer = self._new_producer(budget, self._reporter(failures))
        with self._counts.lock:
            self._oversized_producer = producer  # counted as pending meanwhile
        try:
            self._produce_counted(producer, key, value)
            return self._acknowledged(producer, failures)  # None at once if it was refused before queueing
        finally:
            purge(producer, in_flight=True)  # only when the emitter stops first; the record stays in the spool
            with self._counts.lock:
                self._oversized_producer = None
