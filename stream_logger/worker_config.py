"""What a worker is told (:class:`WorkerConfig`) and what it reports when it ends (:class:`WorkerSummary`)."""

from __future__ import annotations

import itertools
import logging
import os
import socket
from dataclasses import dataclass, field

from aiokafka import TopicPartition as TP

from . import contract

__all__ = [
    "DEFAULT_MAX_RECORD_AGE_S",
    "DEFAULT_MAX_RECORD_LEAD_S",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "WorkerConfig",
    "WorkerSummary",
    "next_client_id",
]

log = logging.getLogger("stream_logger.worker")
_worker_numbers = itertools.count(1)

DEFAULT_MAX_SUBSCRIPTIONS = 200
"""Auto-registered subscriptions a datamart takes by default: each is a table, and each of its days a partition."""
DEFAULT_MAX_RECORD_AGE_S = 30 * 86400.0
"""How old a record a live worker stores by default: longer than Kafka's default retention (7 days)."""
DEFAULT_MAX_RECORD_LEAD_S = 86400.0
"""How far ahead of the worker's clock a record may be by default (clocks that are off, time zones got wrong)."""


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

    def add(self, messages: int, skipped: int, rows: int, duplicates: int, dead_letters: dict[str, int]) -> None:
        """Count a batch written."""
        self.messages += messages
        self.skipped += skipped
        self.rows += rows
        self.duplicates_skipped += duplicates
        for code, n in dead_letters.items():
            self.dead_letters[code] = self.dead_letters.get(code, 0) + n

    def log(self, final: bool = False) -> None:
        """Log the counts so far (``progress: ...``), or at the end (``done: ...``)."""
        log.info(
            "%s: %d messages, %d rows, %d dead letters, %d duplicates skipped",
            "done" if final else "progress",
            self.messages,
            self.rows,
            self.dead_lettered,
            self.duplicates_skipped,
            extra={"messages": self.messages, "rows": self.rows, "dead_letters": self.dead_letters},
        )


def next_client_id() -> str:
    """``stream-logger-<host>-<pid>``, with ``-2``, ``-3``, ... for a process's later workers (the demo runs
    several in one process)."""
    number = next(_worker_numbers)
    return f"stream-logger-{socket.gethostname()}-{os.getpid()}" + (f"-{number}" if number > 1 else "")
