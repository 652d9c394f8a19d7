"""Turn what serving code has at hand into the bytes of a v1 scoring record, the emitter's ``log()``.

Accepted for ``request``, ``response`` and ``meta``: a :class:`~stream_logger.contract.Table`, a ``{"fields",
"values"}`` mapping (``values`` may be a numpy 2-D array), a pandas DataFrame (pandas is never imported here: a
frame is recognised by its ``columns``), or a list of rows as dicts. A ``request`` mapping may carry its ``meta``
block inside, as OpenScale's does.

:func:`encode_call` goes from a call's arguments to the bytes without building a :class:`ScoringRecord`
(:func:`build_record` builds one, for other callers). Validation is :func:`records.decode`'s job: the quick check
here only spares it the records it would surely accept (``tests/unit/test_log_check.py``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence, Sized
from datetime import UTC, datetime, timezone
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from .contract import (
    DEFAULT_DEPLOYMENT_ID,
    DEFAULT_MAX_RECORD_BYTES,
    MAX_FIELDS,
    MAX_NAME_CHARS,
    MAX_ROWS,
    MAX_SCORING_ID_CHARS,
    MAX_TAGS,
    MAX_VALUE_DEPTH,
    ScoringRecord,
    Table,
)
from .encoding import dumps, wire
from .errors import RecordError
from .records import decode

__all__ = ["as_table", "build_record", "encode_call", "new_scoring_id", "now_utc"]


def new_scoring_id() -> str:
    """A fresh random (version 4) UUID as 32 lowercase hex digits, like ``uuid.uuid4().hex`` at a sixth the cost.

    The bits come from :mod:`random`'s generator, which the interpreter seeds from the OS at start-up and again in
    a forked child: these ids must be unique, not unguessable, and ``os.urandom`` is a system call each time.
    """
    return (_random_bits(128) & _V4_CLEAR | _V4_SET).to_bytes(16).hex()  # half the cost of f"{...:032x}"


_random_bits = random.getrandbits
_V4_CLEAR = ~((0xF << 76) | (0x3 << 62))  # the version nibble, and the variant's two top bits
_V4_SET = (0x4 << 76) | (0x2 << 62)  # version 4, variant 10 (RFC 4122)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _plain(value: Any) -> Any:
    """A numpy scalar or array as the Python value it holds; anything else unchanged."""
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist is not None else value


def _check_shape(value: Any, path: str) -> None:
    """Refuse an array or frame too large for one record from its ``shape`` alone, before converting it.

    Rows against MAX_ROWS, values a row against MAX_FIELDS, and the whole against the largest record: each value
    takes at least :data:`_MIN_VALUE_BYTES` of JSON. Nothing happens for an object without a shape.
    """
    shape = getattr(value, "shape", None)
    if type(shape) is not tuple or not shape:
        return
    _check_row_count(shape[0], path)
    if len(shape) > 1:
        _check_width(shape[1], path)
        least = math.prod(shape) * _MIN_VALUE_BYTES
        if least > DEFAULT_MAX_RECORD_BYTES:
            raise RecordError(
                "too_large", f"{path}.values", f"at least {least} bytes; at most {DEFAULT_MAX_RECORD_BYTES} accepted"
            )


def _check_row_count(count: int, path: str) -> None:
    if count > MAX_ROWS:
        raise RecordError("invalid_record", f"{path}.values", f"{count} rows; 1 to {MAX_ROWS} allowed")


def _check_width(width: int, path: str) -> None:
    if width > MAX_FIELDS:
        raise RecordError("invalid_record", f"{path}.values", f"{width} values a row; at most {MAX_FIELDS} fields")


_MIN_VALUE_BYTES: Final = 2
"""The least JSON a value in a row takes: one character, and a comma or bracket."""


def _rows(values: Any, path: str) -> list[list[Any]]:
    _check_shape(values, path)
    values = _plain(values)
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise RecordError("invalid_record", f"{path}.values", "must be a list of rows")
    _check_row_count(len(values), path)
    rows: list[list[Any]] = []
    for row in values:
        shape = getattr(row, "shape", None)
        if type(shape) is tuple and shape:
            _check_width(shape[0], path)
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
    plain = _plain_block(value)
    if plain is not None:
        return Table(fields=plain[0], values=plain[1])
    if isinstance(value, Mapping):
        if "fields" not in value or "values" not in value:
            raise RecordError("invalid_record", path, 'a mapping needs "fields" and "values"')
        fields = value["fields"]
        if isinstance(fields, Sized) and len(fields) > MAX_FIELDS:  # before converting an array of names
            raise RecordError(
                "invalid_record", f"{path}.fields", f"{len(fields)} field names; 1 to {MAX_FIELDS} allowed"
            )
        fields = _plain(fields)
        if not isinstance(fields, list | tuple):
            raise RecordError("invalid_record", f"{path}.fields", "must be a list of names")
        return Table(fields=list(fields), values=_rows(value["values"], path))
    columns = getattr(value, "columns", None)
    if columns is not None and hasattr(value, "__getitem__"):  # a pandas DataFrame
        _check_shape(value, path)
        fields = [str(c) for c in columns]
        data = [value[c].tolist() for c in columns]
        return Table(fields=fields, values=[list(r) for r in zip(*data, strict=True)])
    if hasattr(value, "ndim"):
        raise RecordError(
            "invalid_record", path, 'an array has no field names: pass {"fields": [...], "values": array}'
        )
    if isinstance(value, list) and value:
        _check_row_count(len(value), path)
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


def _not_a_str(path: str, value: object) -> RecordError:
    """A ``scoring_id`` that is not a str is refused, never converted: ``str()`` of the caller's object runs the
    caller's code, and gives an id the caller never held."""
    return RecordError("invalid_record", path, f"must be a str, not {type(value).__name__}")


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
    """A :class:`ScoringRecord` from call-site values (not yet validated; ``log()`` uses :func:`encode_call`)."""
    if meta is None and (type(request) is dict or isinstance(request, Mapping)):
        meta = request.get("meta")
    req = as_table(request, "request")
    if req is None:
        raise RecordError("invalid_record", "request", "is required")
    if scoring_id is not None and not isinstance(scoring_id, str):
        raise _not_a_str("scoring_id", scoring_id)
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


def encode_call(
    request: Any,
    response: Any,
    subscription_id: Any,
    deployment_id: Any,
    scoring_id: Any,
    scoring_timestamp: Any,
    response_time_ms: Any,
    asset_revision: Any,
    status_code: Any,
    error: Any,
    user_id: Any,
    request_id: Any,
    trace_id: Any,
    tags: Any,
    meta: Any,
    sampling_rate: Any,
    validate: bool,
) -> tuple[str, bytes]:
    """The scoring id and v1 bytes of one ``log()`` call (its arguments in order, then ``validate``).

    The bytes and errors of ``encode(build_record(...))`` with the same arguments, with no :class:`ScoringRecord` or
    :class:`Table` on the way. With ``validate``, the bytes are ones :func:`records.decode` accepts: a quick check
    on the objects just written vouches for a call whose field names an earlier full decode accepted, with rows
    of the right shape and plain scalars elsewhere; :func:`records.decode` decides every other call, and raises
    :class:`RecordError` with the reason. The scoring id returned is then always a ``str``.
    """
    if meta is None and (type(request) is dict or isinstance(request, Mapping)):
        meta = request.get("meta")
    if request is None:
        raise RecordError("invalid_record", "request", "is required")
    request_fields, request_rows = _block(request, "request")
    # Then in build_record's order, so that a call with several faults is refused for the same one.
    generated = scoring_id is None
    if generated:
        scoring_id = new_scoring_id()
    elif not isinstance(scoring_id, str):
        raise _not_a_str("scoring_id", scoring_id)
    if scoring_timestamp is None:
        scoring_timestamp = now_utc()
    elif type(scoring_timestamp) is not datetime or scoring_timestamp.tzinfo is None:
        scoring_timestamp = _timestamp(scoring_timestamp)
    response_fields = response_rows = meta_fields = meta_rows = None
    if response is not None:
        response_fields, response_rows = _block(response, "response")
    if meta is not None:
        meta_fields, meta_rows = _block(meta, "request.meta")
    if deployment_id is None:
        deployment_id = DEFAULT_DEPLOYMENT_ID
    if sampling_rate is None:
        sampling_rate = 1.0
    if type(tags) is not dict:
        tags = dict(tags) if tags else {}

    layout = _known_layout(request_fields, meta_fields, response_fields) if validate else None
    if layout is not None:  # write the names as decoded before, never a look-alike that only compares equal
        request_fields, meta_fields, response_fields, _ = layout
    value = dumps(
        wire(
            scoring_id,
            scoring_timestamp,
            subscription_id,
            deployment_id,
            request_fields,
            request_rows,
            meta_fields,
            meta_rows,
            response_fields,
            response_rows,
            asset_revision,
            response_time_ms,
            status_code,
            error,
            sampling_rate,
            user_id,
            request_id,
            trace_id,
            tags,
        )
    )
    if not validate:
        return scoring_id, value
    # What records.decode checks, on the objects just written; at the least doubt, decode decides.
    if (
        layout is not None
        and (generated or (type(scoring_id) is str and 0 < len(scoring_id) <= MAX_SCORING_ID_CHARS))
        and type(subscription_id) is str
        and 0 < len(subscription_id) <= MAX_NAME_CHARS
        and type(deployment_id) is str
        and 0 < len(deployment_id) <= MAX_NAME_CHARS
        and type(scoring_timestamp) is datetime
        and type(scoring_timestamp.tzinfo) in _PLAIN_TIMEZONES
        and type(request_rows) is list
        and 0 < len(request_rows) <= MAX_ROWS
        and _rows_fit(request_rows, request_rows, request_fields)
        and (meta_rows is None or _rows_fit(meta_rows, request_rows, meta_fields))
        and (response_rows is None or _rows_fit(response_rows, request_rows, response_fields))
        and (
            (
                response_rows is not None
                and asset_revision is response_time_ms is status_code is error is user_id is request_id is None
                and trace_id is None
            )
            or _scalars_fit(
                response_rows is not None,
                asset_revision,
                response_time_ms,
                status_code,
                error,
                user_id,
                request_id,
                trace_id,
            )
        )
        and type(sampling_rate) is float
        and 0.0 < sampling_rate <= 1.0
        and (not tags or _tags_fit(tags))
        and len(value) <= DEFAULT_MAX_RECORD_BYTES
        and _shallow(
            value, scoring_id, subscription_id, deployment_id, layout, request_rows, meta_rows, response_rows, tags
        )
    ):
        return scoring_id, value
    record = decode(value)  # accepts, or raises RecordError with the reason
    _learn(record, request_fields, meta_fields, response_fields)
    return record.scoring_id, value


def _plain_block(value: Any) -> tuple[list[Any], list[Any]] | None:
    """The fields and rows of the common case, used as they are: a ``dict`` whose ``"fields"`` is a list and whose
    ``"values"`` is a list of lists. None for any other shape (:func:`as_table` then reads it)."""
    if type(value) is dict:
        fields, rows = value.get("fields"), value.get("values")
        if type(fields) is list and type(rows) is list and len(rows) <= MAX_ROWS:  # more: as_table refuses them
            for row in rows:
                if type(row) is not list:
                    return None
            return fields, rows
    return None


def _block(value: Any, path: str) -> tuple[Any, Any]:
    """A block's fields and rows: the common case as it is, anything else through :func:`as_table`."""
    plain = _plain_block(value)
    if plain is not None:
        return plain
    table = as_table(value, path)
    assert table is not None
    return table.fields, table.values


# ---------------------------------------------------------------------------------------- the quick check

_Layout = tuple[list[str], list[str] | None, list[str] | None, int]
"""The field names of a request, its meta and its response (None for an absent block), of a record
:func:`decode` accepted: valid, distinct, at most MAX_FIELDS in all; only plain ``str``, never changed. Then the
length of the request's names as JSON."""
_LayoutKey = tuple[tuple[Any, ...], tuple[Any, ...] | None, tuple[Any, ...] | None]
_last_layout: _Layout | None = None
_layouts: dict[_LayoutKey, _Layout] = {}
_MAX_LAYOUTS: Final = 1024
_PLAIN_TIMEZONES: Final = frozenset({timezone, ZoneInfo})
"""The tzinfo classes whose datetimes orjson writes as RFC 3339 for sure (others: the full decode reads them)."""
_INF: Final = float("inf")
_INT64_LIMIT: Final = 2**63


def _known_layout(request_fields: Any, meta_fields: Any, response_fields: Any) -> _Layout | None:
    """The known layout whose names equal these lists' (None: not known). Lists only: anything else could
    compare equal and be written otherwise."""
    if type(request_fields) is not list:
        return None
    if not (meta_fields is None or type(meta_fields) is list) or not (
        response_fields is None or type(response_fields) is list
    ):
        return None
    last = _last_layout
    try:
        # Lists compare item by item, the same objects at once; a list never equals None.
        if last is not None and request_fields == last[0] and response_fields == last[2] and meta_fields == last[1]:
            return last
        layout = _layouts.get(_key_of(request_fields, meta_fields, response_fields))
    except Exception:  # a name that cannot even be compared or hashed: the full decode says what is wrong
        return None
    if layout is not None:
        _remember(layout)
    return layout


def _key_of(request_fields: Any, meta_fields: Any, response_fields: Any) -> _LayoutKey:
    return (
        tuple(request_fields),
        None if meta_fields is None else tuple(meta_fields),
        None if response_fields is None else tuple(response_fields),
    )


def _learn(record: ScoringRecord, request_fields: Any, meta_fields: Any, response_fields: Any) -> None:
    """Remember the field layout of a record :func:`decode` accepted, in a bounded table."""
    meta, response = record.request_meta, record.response
    names = _same_names(request_fields, record.request.fields)
    layout = (
        names,
        None if meta is None else _same_names(meta_fields, meta.fields),
        None if response is None else _same_names(response_fields, response.fields),
        len(orjson.dumps(names)),
    )
    if len(_layouts) >= _MAX_LAYOUTS:
        _layouts.clear()
    _remember(_layouts.setdefault(_key_of(*layout[:3]), layout))


def _same_names(given: Any, decoded: list[str]) -> list[str]:
    """A copy of the names as given when they are plain strings equal to the decoded ones (the next call's names
    are then likely the very same objects, which compare at once), else the decoded names."""
    if type(given) is list and all(type(name) is str for name in given) and given == decoded:
        return list(given)
    return decoded


def _remember(layout: _Layout) -> None:
    global _last_layout
    _last_layout = layout


def _rows_fit(rows: Any, request_rows: list[Any], names: Any) -> bool:
    """Whether a block's ``rows`` are a list of as many rows as the request's, each a list as long as ``names``."""
    if type(rows) is not list or len(rows) != len(request_rows):
        return False
    width = len(names)
    for row in rows:  # noqa: SIM110 (a loop is twice as fast as all() over a generator)
        if type(row) is not list or len(row) != width:
            return False
    return True


def _scalars_fit(
    has_response: bool,
    asset_revision: Any,
    response_time_ms: Any,
    status_code: Any,
    error: Any,
    user_id: Any,
    request_id: Any,
    trace_id: Any,
) -> bool:
    """Whether the optional fields are absent or plainly valid, and a call without a response logs a failure."""
    for name in (asset_revision, user_id, request_id, trace_id):
        if name is not None and (type(name) is not str or not 0 < len(name) <= MAX_NAME_CHARS):
            return False
    if response_time_ms is not None:
        kind = type(response_time_ms)
        if not (
            (kind is float and 0.0 <= response_time_ms < _INF) or (kind is int and 0 <= response_time_ms < _INT64_LIMIT)
        ):
            return False
    if status_code is not None and not (type(status_code) is int and 100 <= status_code <= 599):
        return False
    if error is not None and not (type(error) is str and error):
        return False
    return has_response or error is not None or (status_code is not None and status_code >= 400)


def _tags_fit(tags: dict[Any, Any]) -> bool:
    if len(tags) > MAX_TAGS:
        return False
    return all(
        type(key) is str and 0 < len(key) <= MAX_NAME_CHARS and type(value) is str for key, value in tags.items()
    )


def _shallow(
    value: bytes,
    scoring_id: str,
    subscription_id: str,
    deployment_id: str,
    layout: _Layout,
    request_rows: list[Any],
    meta_rows: Any,
    response_rows: Any,
    tags: Any,
) -> bool:
    """Whether no value in a row of ``value`` (written by :func:`wire`) can nest deeper than MAX_VALUE_DEPTH.

    A value that deep holds that many opening brackets of its own. Count them, as ``records._decode_reference``
    does, from where the request's rows may start at the earliest (after the keys, ids, timestamp and field names
    :func:`wire` writes first, each string taking at least its length in bytes, and the names exactly their JSON),
    less the record's own brackets after that point (the request's rows; each other block's brace, names, values
    and rows; the tags' brace). Brackets inside strings only make the count safer.
    """
    start = _BEFORE_ROWS + len(scoring_id) + len(subscription_id) + len(deployment_id) + layout[3]
    rows = len(request_rows)
    others = (meta_rows is not None) + (response_rows is not None)
    own = 1 + rows + others * (3 + rows) + (1 if tags else 0)
    return value.count(b"[", start) + value.count(b"{", start) - own <= MAX_VALUE_DEPTH


_BEFORE_ROWS: Final = len(
    b'{"schema_version":1,"scoring_id":"","scoring_timestamp":"0001-01-01T00:00:00Z","subscription_id":"",'
    b'"deployment_id":"","request":{"fields":,"values":'
)
"""The least :func:`wire` writes before the request's rows, besides the three ids and the request's names."""
