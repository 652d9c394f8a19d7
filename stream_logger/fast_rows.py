"""The compiled path: a message's bytes straight to payload-table rows, for records of a layout already known.

Most of a stream is records of one subscription with the same few field layouts. For those, msgspec decodes the
bytes in one pass into a struct typed for that subscription and layout, each ``values`` row a tuple of its
columns' types, in C, so no intermediate :class:`~stream_logger.contract.ScoringRecord` is built and no value is
type-checked in Python. The path *declines* (returns None) on anything else: an invalid record, a layout the
registry has not covered yet, a value that needs converting or refusing, a NUL character, a number msgspec
would misread (``envelope.numbers_read_exactly``). A declined message
takes the reference path (``records.decode`` then ``Subscription.rows_for``), which gives the same rows or the
precise error; ``tests/unit/test_fast_rows.py`` checks that the two paths agree. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from . import csvcopy, envelope
from .contract import Layout
from .errors import RecordError
from .rows import RowDecoder, json_text, row_decoder
from .subscription import Subscription
from .window import ANY_TIME, WindowBounds

__all__ = ["Mapped", "Mapper"]

Known = Callable[[str, Layout], Subscription | None]
"""``(subscription_id, layout) -> Subscription`` when that subscription has a column for every field of the
layout (``Registry.covering``), else None."""

_RECENT_MAX = 4  # decoders tried before looking a message's layout up


@dataclass(slots=True)
class Mapped:
    """A message mapped by the compiled path: its subscription, rows, and the UTC day of its partition.

    The rows are tuples for binary COPY, or, when ``csv``, lines for CSV COPY (:mod:`stream_logger.csvcopy`).
    """

    sub: Subscription
    rows: list[Any]
    day: date
    csv: bool


class Mapper:
    """Maps the messages of one batch by the compiled path.

    A message is first decoded whole by the decoders that took the latest messages (a stream repeats a few
    subscriptions and layouts); only when none takes it are its envelope and field names read to find its
    subscription and layout (``known``) and so its decoder. Make one per batch: ``known`` may change between
    batches (a subscription gains a column), never within one; so may the ``bounds`` of the timestamps it takes
    (others are declined). With ``csv``, the rows of the messages :func:`csvcopy.takes` accepts are CSV lines.
    """

    def __init__(self, known: Known, *, bounds: WindowBounds = ANY_TIME, csv: bool = True) -> None:
        self._known = known
        self._bounds = bounds
        self._csv = csv
        self._recent: list[tuple[Subscription, RowDecoder]] = []

    def to_rows(self, value: bytes, topic: str, partition: int, offset: int, ingested_at: datetime) -> Mapped | None:
        """The rows of a message value, or None to send it down the reference path."""
        if csvcopy.takes(value):
            csv = self._csv
        elif b"\\u0000" in value:  # a NUL character, which text columns cannot hold: the reference path says where
            return None
        else:
            csv = False
        if len(value) >= envelope.MISREAD_MIN_DIGITS and not envelope.numbers_read_exactly(value):
            return None
        recent = self._recent
        for k, (sub, decoder) in enumerate(recent):
            try:
                env = decoder.decode(value)
            except envelope.DECLINE_ERRORS:
                continue
            if k:
                recent.insert(0, recent.pop(k))
            return _mapped(sub, decoder, env, topic, partition, offset, ingested_at, csv, self._bounds)
        found = self._look_up(value)
        if found is None:
            return None
        sub, decoder, env = found
        return _mapped(sub, decoder, env, topic, partition, offset, ingested_at, csv, self._bounds)

    def _look_up(self, value: bytes) -> tuple[Subscription, RowDecoder, Any] | None:
        """The subscription and decoder of a message no recent decoder took, and the message decoded by it."""
        env = envelope.envelope(value)
        layout = None if env is None else envelope.envelope_layout(env)
        if env is None or layout is None:
            return None
        sub = self._known(env.subscription_id, layout)
        decoder = None if sub is None else row_decoder(sub, layout)
        if sub is None or decoder is None:
            return None
        try:
            shaped = decoder.decode(value)
        except envelope.DECLINE_ERRORS:
            return None
        self._recent.insert(0, (sub, decoder))
        del self._recent[_RECENT_MAX:]
        return sub, decoder, shaped


def _mapped(
    sub: Subscription,
    decoder: RowDecoder,
    env: Any,
    topic: str,
    partition: int,
    offset: int,
    ingested_at: datetime,
    csv: bool,
    bounds: WindowBounds,
) -> Mapped | None:
    timestamp = envelope.timestamp_of(env)
    if timestamp is None or not envelope.logs_a_call(env):
        return None
    deployment_id, sampling_rate, tags = envelope.with_defaults(env)
    # The system columns as rows.rows_for makes them, whose checks the decoder's types have made: no NUL character
    # (none in the value), status_code within 100..599, finite floats (ints decoded as floats).
    system_values = (
        timestamp,
        deployment_id,
        *envelope.nullable_values(env),
        sampling_rate,
        json_text(tags) if tags else None,
        None,  # extra: a layout with undeclared fields has no compiled decoder
        topic,
        partition,
        offset,
        ingested_at,
    )
    rows = decoder.rows(env.scoring_id, system_values, env, csv)
    if rows is None:
        return None
    try:
        day = bounds.day_of(timestamp)
    except RecordError:  # the reference path dead-letters it
        return None
    return Mapped(sub, rows, day, csv)
