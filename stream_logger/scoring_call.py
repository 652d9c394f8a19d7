"""Turn what serving code has at hand into the bytes of a v1 scoring record, the emitter's ``log()``.

Accepted for ``request``, ``response`` and ``meta``: a :class:`~stream_logger.contract.Table`, a ``{"fields",
"values"}`` mapping (``values`` may be a numpy 2-D array), a pandas DataFrame (pandas is never imported here: a
frame is recognised by its ``columns``), or a list of rows as dicts. A ``request`` mapping may carry its ``meta``
block inside, as OpenScale's does. A WML v4 or an Open Inference Protocol (KServe v2) body is read too
(:mod:`stream_logger.serving_shapes`).

A call's keywords are declared once, as :class:`~stream_logger.contract.ScoringCall`. :func:`encode_call` goes from
them to the bytes without building a :class:`ScoringRecord` (:func:`build_record` builds one, for other callers).
Validation is the contract's: the fast path (:mod:`stream_logger.envelope`) vouches for the calls it can, on the
objects just written, and :func:`records.decode` decides every other (``tests/unit/test_log_check.py``).
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Mapping, Sequence, Sized
from datetime import UTC, datetime, timezone
from typing import Any, Final, NamedTuple, Unpack
from zoneinfo import ZoneInfo

from .contract import (
    DEFAULT_DEPLOYMENT_ID,
    DEFAULT_MAX_RECORD_BYTES,
    ID_FIELDS,
    MAX_CALL_ROWS,
    MAX_FIELDS,
    MAX_ROWS,
    OPTIONAL_FIELDS,
    ScoringCall,
    ScoringRecord,
    Table,
)
from .encoding import Block, dumps, record_object
from .envelope import KNOWN_NAMES, call_envelope, plain_names
from .errors import RecordError
from .records import decode, may_nest_too_deep
from .serving_shapes import block_of

__all__ = ["Encoded", "as_table", "build_record", "encode_call", "new_scoring_id", "now_utc"]


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

    Rows against MAX_CALL_ROWS, values a row against MAX_FIELDS, and a record's share (MAX_ROWS rows) against the
    largest record: each value takes at least :data:`_MIN_VALUE_BYTES` of JSON. Nothing happens for an object
    without a shape.
    """
    shape = getattr(value, "shape", None)
    if type(shape) is not tuple or not shape:
        return
    _check_row_count(shape[0], path)
    if len(shape) > 1:
        _check_width(shape[1], path)
        least = min(shape[0], MAX_ROWS) * math.prod(shape[1:]) * _MIN_VALUE_BYTES
        if least > DEFAULT_MAX_RECORD_BYTES:
            raise RecordError(
                "too_large", f"{path}.values", f"at least {least} bytes; at most {DEFAULT_MAX_RECORD_BYTES} accepted"
            )


def _check_row_count(count: int, path: str) -> None:
    if count > MAX_CALL_ROWS:  # more than MAX_ROWS: several records
        raise RecordError("invalid_record", f"{path}.values", f"{count} rows; at most {MAX_CALL_ROWS} a call")


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
            served = block_of(value, path)
            if served is None:
                raise RecordError(
                    "invalid_record",
                    path,
                    'a mapping needs "fields" and "values" (or a WML v4 or Open Inference Protocol body)',
                )
            value = {"fields": served[0], "values": served[1]}
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
    """A call's ``scoring_timestamp`` as a datetime (naive when it was given without an offset)."""
    if value is None:
        return now_utc()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise RecordError("invalid_record", "scoring_timestamp", "not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise RecordError("invalid_record", "scoring_timestamp", "must be a datetime or an ISO 8601 string")
    return value


def build_record(**call: Unpack[ScoringCall]) -> ScoringRecord:
    """A :class:`ScoringRecord` from a ``log()`` call's keywords (not validated: ``records.from_obj`` does that)."""
    scoring_id, _, timestamp, subscription_id, deployment_id, request, meta, response, optional, _ = _parts(call)
    values = {"sampling_rate": 1.0, **optional}
    values["tags"] = dict(values.get("tags") or {})
    return ScoringRecord(
        scoring_id=scoring_id,
        scoring_timestamp=timestamp,
        subscription_id=subscription_id,
        request=Table(*request),
        response=None if response is None else Table(*response),
        request_meta=None if meta is None else Table(*meta),
        deployment_id=deployment_id,
        **values,
    )


class Encoded(NamedTuple):
    """One ``log()`` call, encoded."""

    scoring_id: str
    value: bytes
    naive_timestamp: bool
    """The call's ``scoring_timestamp`` had no offset, and was taken as UTC."""
    more: tuple[bytes, ...] = ()
    """The further records of a call of more than :data:`MAX_ROWS` rows, in order: the same ``scoring_id``, each
    with the ``first_row`` of its rows."""


def encode_call(call: ScoringCall, validate: bool) -> Encoded:
    """The scoring id and v1 bytes of one ``log()`` call: the bytes of ``encode(build_record(**call))``, without
    building the record.

    With ``validate``, the bytes are ones :func:`records.decode` accepts: the fast path of the contract
    (:mod:`stream_logger.envelope`) checks the objects just written, and :func:`records.decode` decides every call
    it declines, raising :class:`RecordError` with the reason. The scoring id returned is then always a ``str``.
    """
    scoring_id, generated, timestamp, subscription_id, deployment_id, request, meta, response, optional, naive = _parts(
        call
    )
    blocks: list[Block | None] = [request, meta, response]
    vouchable = validate and (generated or type(scoring_id) is str) and _known_names(blocks)
    head = (timestamp, subscription_id, deployment_id, optional)
    rows = len(request[1])
    if rows <= MAX_ROWS:
        scoring_id, value = _encode_record(scoring_id, head, blocks, 0, validate, vouchable)
        return Encoded(scoring_id, value, naive)
    values = []
    for first in range(0, rows, MAX_ROWS):  # a call too large for one record: records of MAX_ROWS rows
        part = [None if b is None else (b[0], b[1][first : first + MAX_ROWS]) for b in blocks]
        scoring_id, value = _encode_record(scoring_id, head, part, first, validate, vouchable)
        values.append(value)
    return Encoded(scoring_id, values[0], naive, tuple(values[1:]))


def _encode_record(
    scoring_id: Any,
    head: tuple[datetime, Any, Any, dict[str, Any]],
    blocks: list[Block | None],
    first_row: int,
    validate: bool,
    vouchable: bool,
) -> tuple[str, bytes]:
    """One record's scoring id and bytes, checked as :func:`encode_call` says."""
    timestamp, subscription_id, deployment_id, optional = head
    request = blocks[0]
    assert request is not None
    obj = record_object(
        scoring_id, timestamp, subscription_id, deployment_id, request, blocks[1], blocks[2], optional, first_row
    )
    value = dumps(obj)
    if not validate or (vouchable and _vouched(obj, value, blocks)):
        return scoring_id, value
    return decode(value).scoring_id, value  # decode accepts, or raises RecordError with the reason


_Parts = tuple[Any, bool, datetime, Any, Any, Block, Block | None, Block | None, dict[str, Any], bool]


def _parts(call: ScoringCall) -> _Parts:
    """What a call's keywords mean: the scoring id (and whether it was generated), the timestamp, the ids, each
    block's names and rows, the ``OPTIONAL_FIELDS`` that are set (in their order), and whether the timestamp was
    naive (it is then taken as UTC). Raises :class:`RecordError` for what cannot be written at all."""
    request, meta = call.get("request"), call.get("meta")
    if meta is None and (type(request) is dict or isinstance(request, Mapping)):
        meta = request.get("meta")
    if request is None:
        raise RecordError("invalid_record", "request", "is required")
    request_block = _block(request, "request")
    scoring_id = call.get("scoring_id")
    generated = scoring_id is None
    if generated:
        scoring_id = new_scoring_id()
    elif not isinstance(scoring_id, str):
        raise _not_a_str("scoring_id", scoring_id)
    timestamp = call.get("scoring_timestamp")
    naive = False
    if timestamp is None:
        timestamp = now_utc()
    elif type(timestamp) is not datetime or timestamp.tzinfo is None:
        timestamp = _timestamp(timestamp)
        if timestamp.tzinfo is None or timestamp.utcoffset() is None:  # datetime.utcnow(), in ported code
            timestamp = timestamp.replace(tzinfo=UTC)
            naive = True
    response = call.get("response")
    response_block = None if response is None else _block(response, "response")
    meta_block = None if meta is None else _block(meta, "request.meta")
    deployment_id = call.get("deployment_id")
    if deployment_id is None:
        deployment_id = DEFAULT_DEPLOYMENT_ID
    optional: dict[str, Any] = {}
    if not call.keys() <= _NOT_OPTIONAL:  # the common call sets none
        get = call.get
        for name in OPTIONAL_FIELDS:  # a loop, not a comprehension: half the cost, on every log() call
            value = get(name)
            if value is not None:
                optional[name] = value
        tags = optional.get("tags")
        if tags is not None and type(tags) is not dict:
            optional["tags"] = dict(tags) if tags else {}
    return (
        scoring_id,
        generated,
        timestamp,
        call.get("subscription_id"),
        deployment_id,
        request_block,
        meta_block,
        response_block,
        optional,
        naive,
    )


_NOT_OPTIONAL: Final = frozenset(ScoringCall.__annotations__).difference(OPTIONAL_FIELDS)


def _plain_block(value: Any) -> Block | None:
    """The fields and rows of the common case, used as they are: a ``dict`` whose ``"fields"`` is a list and whose
    ``"values"`` is a list of lists. None for any other shape (:func:`as_table` then reads it)."""
    if type(value) is dict:
        fields, rows = value.get("fields"), value.get("values")
        if type(fields) is list and type(rows) is list and len(rows) <= MAX_CALL_ROWS:  # more: as_table refuses them
            for row in rows:
                if type(row) is not list:
                    return None
            return fields, rows
    return None


def _block(value: Any, path: str) -> Block:
    """A block's fields and rows: the common case as it is, anything else through :func:`as_table`."""
    plain = _plain_block(value)
    if plain is not None:
        return plain
    table = as_table(value, path)
    assert table is not None
    return table.fields, table.values


# ----------------------------------------------------------------------------------- the fast path's check


def _known_names(blocks: list[Block | None]) -> bool:
    """Whether every block's names are a valid list (known, or plain and valid now); puts the remembered names in
    place of the caller's, so that what is written is exactly the names the fast path checked."""
    for index, block in enumerate(blocks):
        if block is None:
            continue
        names = KNOWN_NAMES.known(block[0], index)
        if names is None:
            if not plain_names(block[0]):
                return False
            names = KNOWN_NAMES.add(block[0], index)
        blocks[index] = (names, block[1])
    return True


def _vouched(obj: dict[str, Any], value: bytes, blocks: list[Block | None]) -> bool:
    """Whether the fast path vouches for the record ``obj``, just written as ``value`` from ``blocks`` (request, meta,
    response; their names already checked).

    The envelope's types check the ids, the optional fields and the tags (:data:`envelope.CallEnvelope`); this adds
    what the bytes say (their size; no more brackets than the record's own and MAX_VALUE_DEPTH, so that no value
    nests too deep), no NUL character in an id or a tag name, a timezone orjson surely writes as RFC 3339, each block
    a list of 1 to MAX_ROWS rows, as many as the request's, each a list as long as its block's names, and at most
    MAX_FIELDS names in all.
    """
    timestamp = obj["scoring_timestamp"]
    if (
        len(value) > DEFAULT_MAX_RECORD_BYTES
        or type(timestamp) is not datetime
        or type(timestamp.tzinfo) not in _PLAIN_TIMEZONES
    ):
        return False
    env = call_envelope(obj)
    if env is None or "\x00" in _ids_of(env):
        return False
    count = len(blocks[0][1])  # type: ignore[index]
    if not 0 < count <= MAX_ROWS:
        return False
    width = 0
    own_brackets = 1 if env.tags is None else 2  # the record's brace, and the tags'
    for block in blocks:
        if block is None:
            continue
        names, rows = block
        width += len(names)
        if type(rows) is not list or len(rows) != count:
            return False
        for row in rows:
            if type(row) is not list or len(row) != len(names):
                return False
        own_brackets += 3 + count  # its brace, its names, its rows and each row
    return width <= MAX_FIELDS and not may_nest_too_deep(value, own_brackets)


_envelope_ids: Final = operator.attrgetter(*ID_FIELDS)


def _ids_of(env: Any) -> str:
    """The ids and tag names of an envelope, as one string (none may hold a NUL character)."""
    ids: str = env.scoring_id + env.subscription_id + env.deployment_id + "".join(filter(None, _envelope_ids(env)))
    return ids if env.tags is None else ids + "".join(env.tags)


_PLAIN_TIMEZONES: Final = frozenset({timezone, ZoneInfo})
"""The tzinfo classes whose datetimes orjson writes as RFC 3339 for sure (others: the full decode reads them)."""
