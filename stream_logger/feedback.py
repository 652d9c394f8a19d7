"""The feedback record v1: a ground-truth label, sent on the topic the scoring records take.

``schemas/feedback_record.v1.json`` is the specification and :class:`~stream_logger.contract.FeedbackRecord` the
declaration. This module is the reference validator (:func:`read_feedback`; there is no fast path: labels are a small
share of a topic's traffic) and writes the record (:func:`feedback_object`; :mod:`stream_logger.feedback_call` builds
one from ``Emitter.log_feedback()``'s keywords). :func:`decode_message` reads any message of a topic, scoring record
or feedback. No I/O.

The rules beyond the scoring record's (whose names, ids and timestamps follow the same checks):

- a record gives **either** ``scoring_id`` and ``label`` (a label for a logged scoring call; ``row_index`` picks one
  of its rows, else it labels every row), **or** ``data`` (standalone rows holding the label, in the column
  ``label_field`` or the subscription's target field);
- a ``label`` is a string, a number or a boolean: what a target column holds.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, Final

from .contract import (
    DEFAULT_MAX_RECORD_BYTES,
    FEEDBACK_KEYS,
    FEEDBACK_KIND,
    MAX_NAME_CHARS,
    MAX_ROWS,
    MAX_SCORING_ID_CHARS,
    FeedbackRecord,
    ScoringRecord,
)
from .encoding import dumps, encode
from .envelope import decode_fast
from .errors import RecordError
from .records import (
    MISSING,
    TABLE_KEYS,
    check_name,
    check_version,
    from_obj,
    from_parsed,
    may_nest_too_deep,
    parse_object,
    read_integer,
    read_subscription_id,
    read_table,
    read_timestamp,
)

__all__ = [
    "decode_message",
    "feedback_object",
    "invalid",
    "message_of",
    "read_feedback",
]

_LABEL_TYPES: Final = (str, int, float, bool)
_FORMS: Final = (
    "a feedback record gives either scoring_id and label (a label for a logged scoring call) or data (standalone "
    "rows holding the label)"
)


def decode_message(value: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> ScoringRecord | FeedbackRecord:
    """Decode any message of a topic: a scoring record, or a feedback record (its ``kind`` says so).

    Raises :class:`RecordError` as :func:`stream_logger.records.decode` does, for either kind.
    """
    if not value:
        raise RecordError("empty_message", "", "the message has no value (a tombstone or zero bytes)")
    if len(value) > max_bytes:
        raise RecordError("too_large", "", f"{len(value)} bytes; at most {max_bytes} accepted")
    record = decode_fast(value)  # scoring records only: the fast path has no kind
    if record is not None:
        return record
    obj = parse_object(value)
    if "kind" in obj:
        return read_feedback(obj, may_nest_too_deep(value))
    return from_parsed(obj, value)


def message_of(obj: Any) -> tuple[str, bytes]:
    """The Kafka key and value of a record of either kind given as parsed JSON (a line of ``stream-logger emit``),
    validated: :class:`RecordError` says why not."""
    if isinstance(obj, dict) and "kind" in obj:
        record = read_feedback(obj)
        return record.feedback_id, dumps(feedback_object(record))
    scoring = from_obj(obj)
    return scoring.scoring_id, encode(scoring)


def invalid(path: str, detail: str) -> RecordError:
    return RecordError("invalid_record", path, detail)


def read_feedback(obj: dict[str, Any], check_depth: bool = True) -> FeedbackRecord:
    """Validate a parsed JSON object against the feedback v1 contract (the reference: every error message)."""
    check_version(obj)
    if obj.get("kind") != FEEDBACK_KIND:
        raise invalid("kind", f"must be {FEEDBACK_KIND!r} (a scoring record has no kind)")
    if not FEEDBACK_KEYS.issuperset(obj):
        unknown = sorted(key for key in obj if key not in FEEDBACK_KEYS)[0]
        raise invalid(unknown, "unknown field (a typo? feedback v1 allows: " + ", ".join(sorted(FEEDBACK_KEYS)) + ")")
    feedback_id = obj.get("feedback_id", MISSING)
    check_name(feedback_id, "feedback_id", MAX_SCORING_ID_CHARS)
    subscription_id = read_subscription_id(obj.get("subscription_id", MISSING))
    labelled_at = read_timestamp(obj.get("labelled_at", MISSING), "labelled_at")
    user_id = obj.get("user_id")
    if user_id is not None:
        check_name(user_id, "user_id", MAX_NAME_CHARS)
    scoring_id, data = obj.get("scoring_id"), obj.get("data")
    if scoring_id is None and data is None:
        raise invalid("", f"{_FORMS}: it gives neither")
    if scoring_id is not None and data is not None:
        raise invalid("", f"{_FORMS}, not both")
    label, row_index, label_field = obj.get("label"), obj.get("row_index"), obj.get("label_field")
    if scoring_id is not None:
        check_name(scoring_id, "scoring_id", MAX_SCORING_ID_CHARS)
        if label_field is not None:
            raise invalid("label_field", "names a column of data; a label for a scoring call is given in label")
        if label is None:
            raise invalid("label", "required with scoring_id")
        if type(label) not in _LABEL_TYPES:
            raise invalid("label", f"must be a string, a number or true/false, not {type(label).__name__}")
        if row_index is not None:
            row_index = read_integer(row_index, "row_index", 0, MAX_ROWS - 1)
        return FeedbackRecord(feedback_id, subscription_id, labelled_at, scoring_id, row_index, label, user_id=user_id)
    if label is not None:
        raise invalid("label", "standalone feedback carries its label in a column of data (see label_field)")
    if row_index is not None:
        raise invalid("row_index", "picks a row of the scoring call named by scoring_id; data has no scoring_id")
    table = read_table(data, "data", TABLE_KEYS, check_depth)
    if label_field is not None:
        check_name(label_field, "label_field", MAX_NAME_CHARS)
        if label_field not in table.fields:
            raise invalid("label_field", f"{label_field[:40]!r} is not one of data.fields")
    return FeedbackRecord(
        feedback_id, subscription_id, labelled_at, data=table, label_field=label_field, user_id=user_id
    )


def feedback_object(record: FeedbackRecord) -> dict[str, Any]:
    """The JSON object written for a feedback record: the one spelling of its wire form (None fields left out,
    ``labelled_at`` in UTC)."""
    obj: dict[str, Any] = {
        "schema_version": 1,
        "kind": FEEDBACK_KIND,
        "feedback_id": record.feedback_id,
        "subscription_id": record.subscription_id,
        "labelled_at": record.labelled_at.astimezone(UTC),
    }
    if record.data is not None:
        obj["data"] = {"fields": record.data.fields, "values": record.data.values}
    for name in ("scoring_id", "row_index", "label", "label_field", "user_id"):
        value = getattr(record, name)
        if value is not None:
            obj[name] = value
    return obj
