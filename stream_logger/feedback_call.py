"""Where a feedback record is built: the keywords of ``Emitter.log_feedback()`` to the record's bytes, checked by
the reference validator as the worker will check them (:mod:`stream_logger.feedback`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Unpack

from .contract import FeedbackCall, FeedbackRecord
from .encoding import dumps
from .feedback import feedback_object, invalid, read_feedback
from .records import may_nest_too_deep, parse_object
from .scoring_call import Encoded, as_table, new_scoring_id, now_utc

__all__ = ["build_feedback", "encode_feedback_call"]


def build_feedback(**call: Unpack[FeedbackCall]) -> tuple[FeedbackRecord, bool]:
    """The record of one ``log_feedback()`` call (not validated: :func:`encode_feedback_call` does), and whether
    its ``labelled_at`` had no offset (it is then taken as UTC)."""
    if "subscription_id" not in call:
        raise invalid("subscription_id", "required")
    feedback_id = call.get("feedback_id")
    labelled_at, naive = _labelled_at(call.get("labelled_at"))
    data = call.get("data")
    record = FeedbackRecord(
        new_scoring_id() if feedback_id is None else feedback_id,
        call["subscription_id"],
        labelled_at,
        call.get("scoring_id"),
        call.get("row_index"),
        call.get("label"),
        None if data is None else as_table(data, "data"),
        call.get("label_field"),
        call.get("user_id"),
    )
    return record, naive


def encode_feedback_call(call: FeedbackCall) -> Encoded:
    """The feedback id and v1 bytes of one ``log_feedback()`` call, validated by the reference as the worker will
    (a :class:`RecordError` says why not); ``Encoded.scoring_id`` holds the feedback id."""
    record, naive = build_feedback(**call)
    value = dumps(feedback_object(record))
    checked = read_feedback(parse_object(value), may_nest_too_deep(value))
    return Encoded(checked.feedback_id, value, naive)


def _labelled_at(value: datetime | str | None) -> tuple[datetime, bool]:
    if value is None:
        return now_utc(), False
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise invalid("labelled_at", "not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise invalid("labelled_at", "must be a datetime or an ISO 8601 string")
    if value.utcoffset() is None:
        return value.replace(tzinfo=UTC), True
    return value, False
