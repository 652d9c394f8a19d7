"""Feedback records into feedback tables: each subscription made ready for labels, each record mapped to rows.

:meth:`FeedbackIngest.prepare` makes a subscription ready: registered (without fields, when a label names it
before any payload), its target known (declared, else taken from its first labels: the ``label_field`` of standalone
rows, else ``label``, typed from the labels' values as a payload column is) and its feedback table made
(:mod:`stream_logger.feedback_tables`). :meth:`FeedbackIngest.rows` maps a record to the table's rows: a label by
reference is one row naming its payload row (which need not exist yet); standalone rows put each value in the
column of the payload field of that name, the label in the target's, and fields the subscription lacks in
``extra``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg

from .contract import FeedbackRecord
from .errors import RecordError, describe
from .registry import Registry
from .retry import is_message_fault
from .rows import convert, infer_type, utc_instant
from .subscription import Field, Source, Subscription

__all__ = ["DEFAULT_TARGET", "FeedbackIngest"]

log = logging.getLogger(__name__)

DEFAULT_TARGET: Final = "label"
"""The target's name when the first labels come by reference and the subscription declares none."""

_ROLE_ORDER: Final = ("feature", "meta", "prediction", "probability", "response")


class FeedbackIngest:
    """Feedback for one datamart, through its :class:`~stream_logger.registry.Registry`."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        # The subscriptions whose feedback table this worker made sure of, as the registry then had them: one the
        # registry has since reloaded (evolved, forgotten, the datamart recreated) is made sure of again.
        self._ready: dict[str, Subscription] = {}

    async def prepare(
        self, conn: asyncpg.Connection, records: Sequence[FeedbackRecord]
    ) -> dict[str, Subscription | RecordError]:
        """Each subscription of ``records``, ready for their labels, or the RecordError its records get. Call
        outside a transaction (DDL runs in its own short transactions)."""
        by_id: dict[str, list[FeedbackRecord]] = {}
        for record in records:
            by_id.setdefault(record.subscription_id, []).append(record)
        out: dict[str, Subscription | RecordError] = {}
        for subscription_id, recs in by_id.items():
            sub = self._registry.cached(subscription_id)
            if sub is not None and self._ready.get(subscription_id) is sub:
                out[subscription_id] = sub
                continue
            try:
                out[subscription_id] = await self._make_ready(conn, subscription_id, recs)
            except Exception as exc:
                if not is_message_fault(exc):
                    raise
                self._registry.forget(subscription_id)
                self._ready.pop(subscription_id, None)
                log.error("preparing the feedback table of %r failed", subscription_id[:80], exc_info=True)
                out[subscription_id] = RecordError(
                    "internal_error", "subscription_id", f"preparing the feedback table: {describe(exc)}"
                )
        return out

    async def _make_ready(
        self, conn: asyncpg.Connection, subscription_id: str, records: Sequence[FeedbackRecord]
    ) -> Subscription | RecordError:
        sub = await self._registry.ensure(conn, subscription_id)
        if isinstance(sub, RecordError):
            return sub
        target = None
        if sub.target is None:
            name, labels = _first_labels(records)
            type_ = infer_type(labels)
            if type_ is None:
                return RecordError(
                    "invalid_record", "data", f"the labels are all null: the target of {subscription_id!r} is unknown"
                )
            target = (name, type_)
        sub = await self._registry.ready_for_feedback(conn, sub, target)
        self._ready[subscription_id] = sub
        return sub

    @staticmethod
    def rows(sub: Subscription, record: FeedbackRecord, source: Source, ingested_at: datetime) -> list[tuple[Any, ...]]:
        """The feedback table's rows for ``record`` (its columns: ``feedback_tables.feedback_columns(sub)``).

        Raises RecordError: ``type_conflict`` or ``unstorable_value`` for a value its column cannot take (a
        ``labelled_at`` too), ``invalid_record`` for standalone rows without the target's column.
        """
        target = sub.target
        assert target is not None
        tail = (source.topic, source.partition, source.offset, ingested_at)
        _check_text(record)
        labelled_at = utc_instant(record.labelled_at, "labelled_at")
        if record.data is None:
            label = convert(target.type, record.label, "label")
            head = (
                record.feedback_id,
                0,
                record.scoring_id,
                record.row_index,
                labelled_at,
                record.user_id,
                None,
            )
            return [(*head, *tail, label, *(None,) * len(sub.fields))]
        label_field = record.label_field or target.name
        data = record.data
        if label_field not in data.fields:
            raise RecordError(
                "invalid_record",
                "data.fields",
                f"no field {label_field[:40]!r}, the target of {sub.subscription_id[:80]!r}: name the label's field "
                "with label_field",
            )
        places = _places(sub, data.fields, label_field)
        out = []
        for r, row in enumerate(data.values):
            values: list[Any] = [None] * (1 + len(sub.fields))
            extra: dict[str, Any] = {}
            for i, (name, value) in enumerate(zip(data.fields, row, strict=True)):
                place = places[i]
                if place is None:
                    extra[name] = value
                else:
                    column, type_ = place
                    values[column] = convert(type_, value, f"data.values[{r}][{i}]")
            extra_json = convert("jsonb", extra, "data") if extra else None
            head = (record.feedback_id, r, None, None, labelled_at, record.user_id, extra_json)
            out.append((*head, *tail, *values))
        return out


def _first_labels(records: Sequence[FeedbackRecord]) -> tuple[str, list[Any]]:
    """The target's name these labels suggest (a standalone record's ``label_field``, else :data:`DEFAULT_TARGET`)
    and every label they give."""
    name = next((r.label_field for r in records if r.label_field is not None), DEFAULT_TARGET)
    labels: list[Any] = []
    for r in records:
        if r.data is None:
            labels.append(r.label)
        else:
            column = r.label_field or name
            if column in r.data.fields:
                i = r.data.fields.index(column)
                labels.extend(row[i] for row in r.data.values)
    return name, labels


def _places(sub: Subscription, fields: Sequence[str], label_field: str) -> list[tuple[int, str] | None]:
    """Per field of a standalone record: its place among the row's typed values (0, the target's, for the label;
    then the payload fields' in order) and its type, or None for a field the subscription lacks (``extra``)."""
    assert sub.target is not None
    by_name: dict[str, tuple[int, Field]] = {}
    for role in _ROLE_ORDER:  # a name in two blocks (a response echoing a feature) takes the feature's column
        for j, f in enumerate(sub.fields):
            if f.role == role:
                by_name.setdefault(f.name, (j + 1, f))
    places: list[tuple[int, str] | None] = []
    for name in fields:
        if name == label_field:
            places.append((0, sub.target.type))
        elif name in by_name:
            j, f = by_name[name]
            places.append((j, f.type))
        else:
            places.append(None)
    return places


def _check_text(record: FeedbackRecord) -> None:
    for path, text in (
        ("feedback_id", record.feedback_id),
        ("scoring_id", record.scoring_id),
        ("user_id", record.user_id),
    ):
        if text is not None and "\x00" in text:
            raise RecordError("unstorable_value", path, "a NUL character cannot be stored in text")
