"""The worker's bookkeeping per assigned partition, and the batch it is gathering.

:class:`PartitionState` holds everything the worker knows of one partition it owns: where reading began, what the
datamart holds, what the next batch starts at, how far it has fetched and, for a bounded run, the offset to reach.
:class:`PendingBatch` gathers fetched messages until the worker hands them to the writer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from .sink import Message

__all__ = ["PartitionState", "PendingBatch"]


@dataclass(slots=True)
class PartitionState:
    """One partition the worker owns."""

    start_offset: int
    """Where reading began: the datamart's stored offset, else Kafka's."""
    written_offset: int | None
    """The next offset committed to the datamart; None while nothing is stored for it."""
    target_offset: int = 0
    """A bounded run's end (``until_caught_up``, replay): the offset to reach; 0 when unbounded."""
    next_batch_offset: int = field(init=False)
    """The first offset of the next batch handed to the writer."""
    fetched_to: int = field(init=False)
    """One past the last offset fetched (for a bounded read, past its end too)."""
    lag_reported: bool = False
    """A lag gauge is exported for it (removed when the partition is revoked)."""

    def __post_init__(self) -> None:
        self.seek(self.start_offset)

    @property
    def position(self) -> int:
        """Where the datamart stands: the written offset, else where reading began."""
        return self.written_offset if self.written_offset is not None else self.start_offset

    def seek(self, offset: int) -> None:
        """The consumer is sought to ``offset``: the next batch and the fetch start there."""
        self.next_batch_offset = offset
        self.fetched_to = offset

    @property
    def fetched_to_target(self) -> bool:
        return self.fetched_to >= self.target_offset

    @property
    def done(self) -> bool:
        """A bounded run is over for this partition: written up to its target.

        Past the last message before the target there may be no message at all (a bounded read's end, or
        transaction markers): what was fetched up to the target and is all written counts as done.
        """
        position = self.position
        return position >= self.target_offset or (self.fetched_to_target and self.next_batch_offset == position)


@dataclass(slots=True)
class PendingBatch:
    """Messages fetched and not yet handed to the writer, with the offset range each partition contributes."""

    messages: list[Message] = field(default_factory=list)
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (first offset, one past the last) of this batch."""
    size_bytes: int = 0
    since: float = 0.0
    """When its first message came (``time.monotonic()``)."""

    def add(self, tp: TopicPartition, partition: PartitionState, messages: Sequence[Any], bounded: bool) -> int:
        """Add messages fetched from ``tp``, skipping those a seek made stale (and, ``bounded``, those at or past
        the partition's target); how many were added."""
        if not messages:
            return 0
        partition.fetched_to = max(partition.fetched_to, messages[-1].offset + 1)
        if bounded:  # a bounded read (replay): nothing at or past the end
            messages = [m for m in messages if m.offset < partition.target_offset]
            if not messages:
                return 0
        expected = partition.next_batch_offset
        fresh = [m for m in messages if m.offset >= expected] if messages[0].offset < expected else messages
        if not fresh:
            return 0
        if not self.messages:
            self.since = time.monotonic()
        key = (tp.topic, tp.partition)
        start = self.ranges[key][0] if key in self.ranges else expected
        end = fresh[-1].offset + 1
        self.ranges[key] = (start, end)
        partition.next_batch_offset = end
        self.messages.extend(fresh)
        self.size_bytes += sum(len(m.value) if m.value else 0 for m in fresh)
        return len(fresh)
