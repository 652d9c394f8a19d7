"""Turn what serving code has at hand into a v1 scoring record, then into the bytes the emitter sends.

Accepted for ``request``, ``response`` and ``meta``: a :class:`~stream_logger.records.Table`, a ``{"fields",
"values"}`` mapping (``values`` may be a numpy 2-D array), a pandas DataFrame (pandas is never imported here: a
frame is recognised by its ``columns``), or a list of rows as dicts. A ``request`` mapping may carry its ``meta``
block inside, as OpenScale's does. Validation itself is :mod:`stream_logger.records`' job.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .encoding import encode
from .errors import RecordError
from .records import (
    DECLINED,
    DEFAULT_DEPLOYMENT_ID,
    DEFAULT_MAX_RECORD_BYTES,
    ScoringRecord,
    Table,
    Value,
    decode,
    envelope,
    layout_of,
    logs_a_call,
    shaped_decoder,
    timestamp_of,
)

__all__ = ["as_table", "build_record", "encode_checked", "new_scoring_id", "now_utc"]


def new_scoring_id() -> str:
    """A fresh random (version 4) UUID as 32 lowercase hex digits, like ``uuid.uuid4().hex`` at a sixth the cost.

    The bits come from :mod:`random`'s generator, which the interpreter seeds from the OS at start-up and again in
    a forked child: these ids must be unique, not unguessable, and ``os.urandom`` is a system call each time.
    """
    return f"{_random_bits(128) & _V4_CLEAR | _V4_SET:032x}"


_random_bits = random.getrandbits
_V4_CLEAR = ~((0xF << 76) | (0x3 << 62))  # the version nibble, and the variant's two top bits
_V4_SET = (0x4 << 76) | (0x2 << 62)  # version 4, variant 10 (RFC 4122)


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
        if (
            type(fields) is list
            and type(rows) is list
            and (type(rows[0]) is list if len(rows) == 1 else all(type(row) is list for row in rows))
        ):
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
    size limit included. A record of a subscription and field layout seen before is checked in one pass
    (:class:`OnePassCheck`); any other, or one that check declines, is decoded in full, which accepts it or
    raises :class:`RecordError` with the reason.
    """
    value = encode(record)
    meta, response = record.request_meta, record.response
    key = (
        record.subscription_id,
        tuple(record.request.fields),
        None if meta is None else tuple(meta.fields),
        None if response is None else tuple(response.fields),
    )
    if len(value) > DEFAULT_MAX_RECORD_BYTES or not _ONE_PASS.passes(key, value):
        decode(value)
    return value


_LayoutOf = tuple[str, tuple[Any, ...], tuple[Any, ...] | None, tuple[Any, ...] | None]


class OnePassCheck:
    """The consumer's compiled check of encoded records (:func:`records.decode` without building the record), in
    one msgspec pass per record: a decoder per subscription and field layout (:func:`records.shaped_decoder`, every
    value typed as :data:`records.Value`), learned from the first record of that layout that decodes.

    :meth:`passes` says True only for bytes the compiled decode accepts, so also the reference validator
    (``tests/unit/test_compiled.py``); False means "decode in full to know".
    """

    _MAX_LAYOUTS = 1024

    def __init__(self) -> None:
        self._decoders: dict[_LayoutOf, Any] = {}

    def passes(self, key: _LayoutOf, value: bytes) -> bool:
        try:
            decoder = self._decoders.get(key)
        except TypeError:  # a field name that is not even hashable: the full check says what is wrong
            return False
        if decoder is None:
            decoder = self._learn(key, value)
            if decoder is None:
                return False
        try:
            env = decoder(value)
        except DECLINED:
            return False
        rows = len(env.request.values)
        meta, response = env.request.meta, env.response
        return (
            (meta is None or len(meta.values) == rows)
            and (response is None or len(response.values) == rows)
            and logs_a_call(env)
            and timestamp_of(env) is not None
        )

    def _learn(self, key: _LayoutOf, value: bytes) -> Any:
        env = envelope(value)
        layout = None if env is None else layout_of(env)
        if env is None or layout is None or (env.subscription_id, *layout) != key:
            return None
        row_types = [None if names is None else tuple.__class_getitem__((Value,) * len(names)) for names in layout]
        if len(self._decoders) >= self._MAX_LAYOUTS:
            self._decoders.clear()
        decoder = self._decoders[key] = shaped_decoder(env.subscription_id, layout, row_types).decode
        return decoder


_ONE_PASS = OnePassCheck()
