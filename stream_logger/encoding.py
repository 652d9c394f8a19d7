"""Writing a scoring record v1 as the Kafka message value (orjson). The reading side is ``records.py``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, Final

import orjson

from .errors import RecordError
from .records import ScoringRecord

__all__ = ["encode", "to_obj"]
_ENCODE_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def encode(record: ScoringRecord) -> bytes:
    """The record as UTF-8 JSON bytes, the Kafka message value (``decode(encode(r)) == r`` for a valid record).

    Timestamps are written RFC 3339 with their offset (``Z`` for UTC); numpy scalars and arrays as numbers and
    arrays; non-finite floats as ``null``. Raises :class:`RecordError` (``invalid_record``) for a naive
    timestamp or a value that has no JSON form.
    """
    try:
        return orjson.dumps(_wire(record), default=_default, option=_ENCODE_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise RecordError("invalid_record", "", f"cannot encode: {exc}") from None


def to_obj(record: ScoringRecord) -> dict[str, Any]:
    """The record as a plain JSON object: exactly what :func:`encode` writes, parsed back."""
    result: dict[str, Any] = orjson.loads(encode(record))
    return result


def _wire(record: ScoringRecord) -> dict[str, Any]:
    timestamp = record.scoring_timestamp
    offset = timestamp.utcoffset()
    if offset is None:
        raise RecordError("invalid_record", "scoring_timestamp", "a naive datetime; give it a timezone")
    if offset.seconds % 60 or offset.microseconds:  # RFC 3339 offsets are whole minutes
        timestamp = timestamp.astimezone(UTC)
    request: dict[str, Any] = {"fields": record.request.fields, "values": record.request.values}
    if record.request_meta is not None:
        request["meta"] = {"fields": record.request_meta.fields, "values": record.request_meta.values}
    obj: dict[str, Any] = {
        "schema_version": record.schema_version,
        "scoring_id": record.scoring_id,
        "scoring_timestamp": timestamp,
        "subscription_id": record.subscription_id,
        "deployment_id": record.deployment_id,
        "request": request,
    }
    if record.response is not None:
        obj["response"] = {"fields": record.response.fields, "values": record.response.values}
    for key in ("asset_revision", "response_time_ms", "status_code", "error", "user_id", "request_id", "trace_id"):
        value = getattr(record, key)
        if value is not None:
            obj[key] = value
    if record.sampling_rate != 1.0:
        obj["sampling_rate"] = record.sampling_rate
    if record.tags:
        obj["tags"] = record.tags
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
