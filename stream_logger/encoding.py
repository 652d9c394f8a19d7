"""Writing a scoring record v1 as the Kafka message value (orjson). The reading side is ``records.py``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any, Final

import orjson

from .contract import OPTIONAL_FIELDS, ScoringRecord
from .errors import RecordError

__all__ = ["Block", "dumps", "encode", "record_object", "to_obj"]
_ENCODE_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def encode(record: ScoringRecord) -> bytes:
    """The record as UTF-8 JSON bytes, the Kafka message value (``decode(encode(r)) == r`` for a valid record).

    Timestamps are written RFC 3339 with their offset (``Z`` for UTC); numpy scalars and arrays as numbers and
    arrays; non-finite floats as ``null``. Raises :class:`RecordError` (``invalid_record``) for a naive
    timestamp or a value that has no JSON form.
    """
    meta, response = record.request_meta, record.response
    return dumps(
        record_object(
            record.scoring_id,
            record.scoring_timestamp,
            record.subscription_id,
            record.deployment_id,
            (record.request.fields, record.request.values),
            None if meta is None else (meta.fields, meta.values),
            None if response is None else (response.fields, response.values),
            {name: value for name in OPTIONAL_FIELDS if (value := getattr(record, name)) is not None},
            record.first_row,
        )
    )


def to_obj(record: ScoringRecord) -> dict[str, Any]:
    """The record as a plain JSON object: exactly what :func:`encode` writes, parsed back."""
    result: dict[str, Any] = orjson.loads(encode(record))
    return result


def dumps(obj: dict[str, Any]) -> bytes:
    """A :func:`record_object` as JSON bytes; :class:`RecordError` (``invalid_record``) for a value with no JSON
    form."""
    try:
        return orjson.dumps(obj, default=_default, option=_ENCODE_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise RecordError("invalid_record", "", f"cannot encode: {exc}") from None


Block = tuple[Any, Any]
"""A block's field names and rows, as given."""


def record_object(
    scoring_id: Any,
    scoring_timestamp: datetime,
    subscription_id: Any,
    deployment_id: Any,
    request: Block,
    meta: Block | None,
    response: Block | None,
    optional: Mapping[str, Any],
    first_row: int = 0,
) -> dict[str, Any]:
    """The JSON object written for a record, from its parts: the one spelling of the wire format (key order, and
    what is left out), shared by :func:`encode` and the emitter's ``log()``, which has no :class:`ScoringRecord`.

    ``optional`` holds the :data:`~stream_logger.contract.OPTIONAL_FIELDS` that are set (not None), in their order.
    ``first_row`` is written unless 0 (a further record of a call split in several). Left out besides those: a
    sampling rate of 1.0, empty tags. A timestamp whose offset is not whole minutes is
    written in UTC (RFC 3339 has no seconds in offsets); a naive one raises :class:`RecordError`.
    """
    if scoring_timestamp.tzinfo is not UTC:
        offset = scoring_timestamp.utcoffset()
        if offset is None:
            raise RecordError("invalid_record", "scoring_timestamp", "a naive datetime; give it a timezone")
        if offset.seconds % 60 or offset.microseconds:  # RFC 3339 offsets are whole minutes
            scoring_timestamp = scoring_timestamp.astimezone(UTC)
    request_obj: dict[str, Any] = {"fields": request[0], "values": request[1]}
    if meta is not None:
        request_obj["meta"] = {"fields": meta[0], "values": meta[1]}
    obj: dict[str, Any] = {
        "schema_version": 1,
        "scoring_id": scoring_id,
        "scoring_timestamp": scoring_timestamp,
        "subscription_id": subscription_id,
        "deployment_id": deployment_id,
        "request": request_obj,
    }
    if response is not None:
        obj["response"] = {"fields": response[0], "values": response[1]}
    if optional:
        obj.update(optional)
        if "sampling_rate" in optional and optional["sampling_rate"] == 1.0:
            del obj["sampling_rate"]
        if "tags" in optional and not optional["tags"]:
            del obj["tags"]
    if first_row:
        obj["first_row"] = first_row
    return obj


def _default(value: Any) -> Any:
    """What orjson cannot write itself: numpy values it does not know, decimals, datetime subclasses."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy arrays (non-contiguous, other dtypes) and scalars
    if callable(tolist):
        return tolist()
    if type(value).__name__ == "Decimal":
        return float(value)
    raise TypeError(f"{type(value).__name__} has no JSON form")
