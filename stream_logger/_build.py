"""Turn what serving code has at hand into a v1 scoring record, then into the bytes the emitter sends.

Accepted for ``request``, ``response`` and ``meta``: a :class:`~stream_logger.records.Table`, a ``{"fields",
"values"}`` mapping (``values`` may be a numpy 2-D array), a pandas DataFrame (pandas is never imported here: a
frame is recognised by its ``columns``), or a list of rows as dicts. A ``request`` mapping may carry its ``meta``
block inside, as OpenScale's does. Validation itself is :mod:`stream_logger.records`' job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .encoding import encode
from .errors import RecordError
from .records import DEFAULT_DEPLOYMENT_ID, ScoringRecord, Table, decode

__all__ = ["as_table", "build_record", "encode_checked", "new_scoring_id", "now_utc"]


def new_scoring_id() -> str:
    """A fresh random (version 4) UUID as 32 lowercase hex digits, like ``uuid.uuid4().hex`` at a third the cost."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40
    b[8] = b[8] & 0x3F | 0x80
    return b.hex()


def now_utc() -> datetime:
    return datetime.now(UTC)


def _plain(value: Any) -> Any:
    """A numpy scalar or array as the Python value it holds; anything else unchanged."""
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist is not None else value


def _rows(values: Any, path: str) -> list[list[Any]]:
    values = _plain(values)
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise RecordError("invalid_record", f"{path}.values", "must be a list of rows")
    rows: list[list[Any]] = []
    for row in values:
        row = _plain(row)
        if isinstance(row, list):
            rows.append(row)
        elif isinstance(row, tuple):
            rows.append(list(row))
        else:
            raise RecordError("invalid_record", f"{path}.values", "every row must be a list")
    return rows


def as_table(value: Any, path: str) -> Table | None:
    """``value`` as a :class:`Table` (``None`` stays ``None``); :class:`RecordError` when it has no such shape."""
    if value is None or isinstance(value, Table):
        return value
    if type(value) is dict:  # the common case, checked cheaply: lists of lists are used as they are
        fields, rows = value.get("fields"), value.get("values")
        if type(fields) is list and type(rows) is list and all(type(row) is list for row in rows):
            return Table(fields=fields, values=rows)
    if isinstance(value, Mapping):
        if "fields" not in value or "values" not in value:
            raise RecordError("invalid_record", path, 'a mapping needs "fields" and "values"')
        fields = _plain(value["fields"])
        if not isinstance(fields, list | tuple):
            raise RecordError("invalid_record", f"{path}.fields", "must be a list of names")
        return Table(fields=list(fields), values=_rows(value["values"], path))
    columns = getattr(value, "columns", None)
    if columns is not None and hasattr(value, "__getitem__"):  # a pandas DataFrame
        fields = [str(c) for c in columns]
        data = [value[c].tolist() for c in columns]
        return Table(fields=fields, values=[list(r) for r in zip(*data, strict=True)])
    if hasattr(value, "ndim"):
        raise RecordError(
            "invalid_record", path, 'an array has no field names: pass {"fields": [...], "values": array}'
        )
    if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
        names: dict[str, None] = {}
        for r in value:
            names.update(dict.fromkeys(r))
        fields = list(names)
        return Table(fields=fields, values=[[_plain(r.get(f)) for f in fields] for r in value])
    raise RecordError(
        "invalid_record",
        path,
        'expected {"fields", "values"}, a DataFrame or a list of dicts, got ' + type(value).__name__,
    )


def _timestamp(value: datetime | str | None) -> datetime:
    if value is None:
        return now_utc()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise RecordError("invalid_record", "scoring_timestamp", "not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise RecordError("invalid_record", "scoring_timestamp", "must be a datetime or an ISO 8601 string")
    if value.tzinfo is None:
        raise RecordError("invalid_record", "scoring_timestamp", "must carry a timezone (use UTC)")
    return value


def build_record(
    *,
    request: Any,
    response: Any,
    subscription_id: str,
    deployment_id: str | None = None,
    scoring_id: str | None = None,
    scoring_timestamp: datetime | str | None = None,
    response_time_ms: float | None = None,
    asset_revision: str | None = None,
    status_code: int | None = None,
    error: str | None = None,
    user_id: str | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    meta: Any = None,
    sampling_rate: float | None = None,
) -> ScoringRecord:
    """A :class:`ScoringRecord` from call-site values (not yet validated: see :func:`encode_checked`)."""
    if meta is None and (type(request) is dict or isinstance(request, Mapping)):
        meta = request.get("meta")
    req = as_table(request, "request")
    if req is None:
        raise RecordError("invalid_record", "request", "is required")
    return ScoringRecord(
        scoring_id=scoring_id if scoring_id is not None else new_scoring_id(),
        scoring_timestamp=_timestamp(scoring_timestamp),
        subscription_id=subscription_id,
        request=req,
        response=as_table(response, "response"),
        request_meta=as_table(meta, "request.meta"),
        deployment_id=deployment_id if deployment_id is not None else DEFAULT_DEPLOYMENT_ID,
        asset_revision=asset_revision,
        response_time_ms=response_time_ms,
        status_code=status_code,
        error=error,
        sampling_rate=1.0 if sampling_rate is None else sampling_rate,
        user_id=user_id,
        request_id=request_id,
        trace_id=trace_id,
        tags=dict(tags) if tags else {},
    )


def encode_checked(record: ScoringRecord) -> bytes:
    """The record's v1 bytes, once the consumer's own check (:func:`~stream_logger.records.decode`) accepts them.

    Decoding what was encoded is the cheapest complete check: the bytes sent are exactly the bytes validated,
    size limit included. Raises :class:`RecordError` otherwise.
    """
    value = encode(record)
    decode(value)
    return value
