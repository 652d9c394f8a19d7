"""Writing a scoring record v1 as the Kafka message value (orjson). The reading side is ``records.py``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, Final

import orjson

from .contract import ScoringRecord
from .errors import RecordError

__all__ = ["dumps", "encode", "to_obj", "wire"]
_ENCODE_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def encode(record: ScoringRecord) -> bytes:
    """The record as UTF-8 JSON bytes, the Kafka message value (``decode(encode(r)) == r`` for a valid record).

    Timestamps are written RFC 3339 with their offset (``Z`` for UTC); numpy scalars and arrays as numbers and
    arrays; non-finite floats as ``null``. Raises :class:`RecordError` (``invalid_record``) for a naive
    timestamp or a value that has no JSON form.
    """
    meta, response = record.request_meta, record.response
    return dumps(
        wire(
            record.scoring_id,
            record.scoring_timestamp,
            record.subscription_id,
            record.deployment_id,
            record.request.fields,
            record.request.values,
            None if meta is None else meta.fields,
            None if meta is None else meta.values,
            None if response is None else response.fields,
            None if response is None else response.values,
            record.asset_revision,
            record.response_time_ms,
            record.status_code,
            record.error,
            record.sampling_rate,
            record.user_id,
            record.request_id,
            record.trace_id,
            record.tags,
            record.schema_version,
        )
    )


def to_obj(record: ScoringRecord) -> dict[str, Any]:
    """The record as a plain JSON object: exactly what :func:`encode` writes, parsed back."""
    result: dict[str, Any] = orjson.loads(encode(record))
    return result


def dumps(obj: dict[str, Any]) -> bytes:
    """A :func:`wire` object as JSON bytes; :class:`RecordError` (``invalid_record``) for a value with no JSON form."""
    try:
        return orjson.dumps(obj, default=_default, option=_ENCODE_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise RecordError("invalid_record", "", f"cannot encode: {exc}") from None


def wire(
    scoring_id: Any,
    scoring_timestamp: datetime,
    subscription_id: Any,
    deployment_id: Any,
    request_fields: Any,
    request_values: Any,
    meta_fields: Any,
    meta_values: Any,
    response_fields: Any,
    response_values: Any,
    asset_revision: Any,
    response_time_ms: Any,
    status_code: Any,
    error: Any,
    sampling_rate: Any,
    user_id: Any,
    request_id: Any,
    trace_id: Any,
    tags: Any,
    schema_version: int = 1,
) -> dict[str, Any]:
    """The JSON object written for a record, from its parts: the one spelling of the wire format (key order, and
    what is left out), shared by :func:`encode` and the emitter's ``log()``, which has no :class:`ScoringRecord`.

    Absent blocks have None for their fields and values. Left out: optional fields that are None, a sampling rate
    of 1.0, empty tags. A timestamp whose offset is not whole minutes is written in UTC (RFC 3339 has no seconds
    in offsets); a naive one raises :class:`RecordError`.
    """
    if scoring_timestamp.tzinfo is not UTC:
        offset = scoring_timestamp.utcoffset()
        if offset is None:
            raise RecordError("invalid_record", "scoring_timestamp", "a naive datetime; give it a timezone")
        if offset.seconds % 60 or offset.microseconds:  # RFC 3339 offsets are whole minutes
            scoring_timestamp = scoring_timestamp.astimezone(UTC)
    request: dict[str, Any] = {"fields": request_fields, "values": request_values}
    if meta_fields is not None:
        request["meta"] = {"fields": meta_fields, "values": meta_values}
    obj: dict[str, Any] = {
        "schema_version": schema_version,
        "scoring_id": scoring_id,
        "scoring_timestamp": scoring_timestamp,
        "subscription_id": subscription_id,
        "deployment_id": deployment_id,
        "request": request,
    }
    if response_fields is not None:
        obj["response"] = {"fields": response_fields, "values": response_values}
    if asset_revision is not None:
        obj["asset_revision"] = asset_revision
    if response_time_ms is not None:
        obj["response_time_ms"] = response_time_ms
    if status_code is not None:
        obj["status_code"] = status_code
    if error is not None:
        obj["error"] = error
    if user_id is not None:
        obj["user_id"] = user_id
    if request_id is not None:
        obj["request_id"] = request_id
    if trace_id is not None:
        obj["trace_id"] = trace_id
    if sampling_rate != 1.0:
        obj["sampling_rate"] = sampling_rate
    if tags:
        obj["tags"] = tags
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
