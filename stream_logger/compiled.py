"""The compiled path: a message's bytes straight to payload-table rows, for records of a layout already known.

Most of a stream is records of one subscription with the same few field layouts. For those, msgspec decodes the
bytes into typed structs and each ``values`` row into a tuple of its columns' types, in C, so no intermediate
:class:`~stream_logger.records.ScoringRecord` is built and no value is type-checked in Python. The path *declines*
(returns None) on anything else: an invalid record, a layout the registry has not covered yet, a value that needs
converting or refusing, a NUL character. A declined message takes the reference path (``records.decode`` then
``Subscription.rows_for``), which gives the same rows or the precise error; ``tests/unit/test_compiled.py`` checks
that the two paths agree. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from . import records
from .records import LayoutKey
from .rows import Subscription, head_columns

__all__ = ["Mapped", "to_rows"]

Known = Callable[[str, LayoutKey], Subscription | None]
"""``(subscription_id, layout) -> Subscription`` when that subscription has a column for every field of the
layout (``Registry.known_layout``), else None."""


@dataclass(slots=True)
class Mapped:
    """A message mapped by the compiled path: its subscription, rows, and the UTC day of its partition."""

    sub: Subscription
    rows: list[tuple[Any, ...]]
    day: date


def to_rows(
    value: bytes, known: Known, topic: str, partition: int, offset: int, ingested_at: datetime
) -> Mapped | None:
    """The rows of a message value, or None to send it down the reference path."""
    # JSON writes a NUL character as \u0000, and text columns cannot hold one: the reference path says where.
    # Looking for a backslash first is a memchr; most records have none.
    if b"\\" in value and b"\\u0000" in value:
        return None
    env = records.envelope(value)
    if env is None:
        return None
    layout = records.layout_of(env)
    if layout is None:
        return None
    sub = known(env.subscription_id, layout)
    decoder = None if sub is None else sub.row_decoder(layout)
    timestamp = None if decoder is None else records.timestamp_of(env)
    if sub is None or decoder is None or timestamp is None:
        return None
    deployment_id = env.deployment_id
    sampling_rate = env.sampling_rate
    head = head_columns(
        timestamp,
        records.DEFAULT_DEPLOYMENT_ID if deployment_id is None else deployment_id,
        env.asset_revision,
        env.response_time_ms,
        env.status_code,
        env.error,
        env.user_id,
        env.request_id,
        env.trace_id,
        1.0 if sampling_rate is None else sampling_rate,
        env.tags or {},
        checked=True,  # no \u0000 in the value; the envelope holds status_code to 100..599
    )
    meta, response = env.request.meta, env.response
    rows = decoder.rows(
        env.scoring_id,
        (*head, None, topic, partition, offset, ingested_at),
        env.request.values,
        None if meta is None else meta.values,
        None if response is None else response.values,
    )
    if rows is None:
        return None
    return Mapped(sub, rows, timestamp.astimezone(UTC).date())
