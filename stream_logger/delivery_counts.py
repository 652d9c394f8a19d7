"""What happened to an emitter's records: the counts behind :class:`EmitterStats`, and the drop warning.

One lock (:attr:`DeliveryCounts.lock`) guards the counts and, in :class:`~stream_logger.delivery.Delivery`, the
state and the spool too; every ``*_locked`` method is called with it held.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException

from .producer import REFUSED_RECORD

__all__ = ["DeliveryCounts", "EmitterStats", "refused_before_queueing"]

log = logging.getLogger("stream_logger.emitter")

_DROP_WARNING_INTERVAL_S = 10.0


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
    naive_timestamps: int = 0
    """Records logged with a ``scoring_timestamp`` without a timezone, taken as UTC (they are sent as any other)."""


class DeliveryCounts:
    """Counts of records sent, failed, dropped, spilled and invalid for one topic, with a rate-limited warning
    for drops (at most one every 10 s, saying how many since the last)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.spilled = 0
        self.invalid = 0
        self.naive_timestamps = 0
        self._last_drop_warning = 0.0
        self._drops_unreported = 0

    def note_drop_locked(self, reason: str) -> None:
        """Count a record dropped for ``reason``."""
        self.dropped += 1
        self._drops_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL_S:
            log.warning(
                "topic %s: dropped %d record(s) since the last warning: %s (%d dropped in all)",
                self.topic,
                self._drops_unreported,
                reason,
                self.dropped,
            )
            self._last_drop_warning = now
            self._drops_unreported = 0

    def note_failure_locked(self, err: KafkaError) -> bool:
        """Count a delivery the broker did not acknowledge; True when it refused the record for good, which is
        then dropped (sending it again cannot cure it)."""
        self.failed += 1
        if err.code() in REFUSED_RECORD:
            self.note_drop_locked(f"the broker refuses the record: {err.str()}")
            return True
        return False

    def stats_locked(self, *, held: int, pending: int, spool_records: int, spool_bytes: int, torn: int) -> EmitterStats:
        """The stats, with ``held`` records waiting for start() and ``pending`` in the producers."""
        return EmitterStats(
            queued=held + pending,
            sent=self.sent,
            acknowledged=max(0, self.sent - self.failed - pending),
            failed=self.failed,
            dropped=self.dropped,
            spilled=self.spilled,
            invalid=self.invalid,
            spool_records=spool_records,
            spool_bytes=spool_bytes,
            torn=torn,
            naive_timestamps=self.naive_timestamps,
        )


def refused_before_queueing(exc: KafkaException) -> str:
    """Why ``produce()`` refused a record before queueing it (e.g. larger than the producer allows)."""
    err = exc.args[0] if exc.args else None
    return f"the producer refuses the record: {err.str() if isinstance(err, KafkaError) else exc}"
