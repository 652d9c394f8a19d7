"""Turning one scoring record into payload-table rows: the hot path of the sink. No I/O.

:class:`Subscription` knows its fields and their columns; :meth:`Subscription.rows_for` gives one tuple per scored
row in :attr:`Subscription.columns` order, ready for ``COPY``. Per distinct field layout of incoming records a
:class:`_Plan` (which value goes to which column, through which converter) is computed once and cached.

Hostile values, and what happens to them:

- A value that does not fit its column's type is **not coerced**: ``type_conflict`` (dead-lettered by the sink).
  Only what loses nothing is converted: an integer into a float column, and a whole float (``33.0``, as a numpy
  float matrix holds an integer column) into a bigint column. A fractional float into a bigint column, a string
  into a number column, a boolean into an integer column are conflicts. Integers outside bigint's range
  (-2**63 .. 2**63-1) are conflicts too (numbers PostgreSQL cannot hold never reach the COPY).
- Text containing a NUL character (PostgreSQL text cannot hold one), and JSON containing ``\\u0000`` (jsonb
  refuses it), raise ``unstorable_value`` here, before the COPY, so the record is dead-lettered alone and its
  neighbours are written. Anything PostgreSQL still refuses (e.g. a lone surrogate in a string built in Python,
  which orjson never decodes) fails the COPY and is isolated by the sink as ``unstorable_value``.
- Absurdly long values are stored as they are: the record size limit (``too_large``) bounds them, no indexed
  column takes user text except ``scoring_id`` (at most 128 characters), and field names longer than
  ``MAX_NAME_CHARS`` are refused by ``records``; over-long names are mapped with a hash by ``identifiers``.
- Fields a subscription does not declare go to the ``extra`` jsonb column as
  ``{"request": {...}, "meta": {...}, "response": {...}}``: nothing the model sent is thrown away. Response
  fields that echo a request field (same name) are not stored twice.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import orjson

from . import csvcopy, envelope
from .contract import NULLABLE_FIELDS, Layout, ScoringRecord
from .errors import RecordError
from .identifiers import SYSTEM_COLUMN_DEFINITIONS, column_type
from .subscription import SOURCES, Source, Subscription

__all__ = [
    "RowDecoder",
    "convert",
    "infer_type",
    "json_text",
    "partition_day",
    "row_decoder",
    "rows_for",
    "utc_instant",
]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INT64_LIMIT: Final = 2.0**63
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_PATH_PREFIX: Final = ("request.values", "request.meta.values", "response.values")
_PLAN_CACHE_SIZE: Final = 256


class _Conflict(Exception):
    """A value does not fit: raised by converters, turned into RecordError with its path by rows_for."""

    def __init__(self, detail: str, code: str = "type_conflict") -> None:
        self.detail = detail
        self.code = code


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    return "boolean" if type(value) is bool else type(value).__name__


def json_text(value: Any) -> str:
    """``value`` as JSON text for a jsonb column; raises _Conflict(unstorable_value) for a NUL character."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits: the standard library writes them exactly, jsonb stores them
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    if "\\u0000" in text:
        raise _Conflict("a NUL character (\\u0000) cannot be stored in jsonb", "unstorable_value")
    return text


def _to_bigint(v: Any) -> Any:
    if type(v) is int and _INT64_MIN <= v <= _INT64_MAX:
        return v
    if type(v) is int:
        raise _Conflict(f"integer {_show(v)} is outside the bigint range")
    if type(v) is float and v.is_integer() and _INT64_MIN <= v < _INT64_LIMIT:  # 33.0 from a float matrix: 33
        return int(v)
    raise _Conflict(f"expected an integer (bigint column), got {_kind(v)} {_show(v)}")


def _to_float8(v: Any) -> Any:
    t = type(v)
    if t is float:
        return v
    if t is int:
        try:
            return float(v)
        except OverflowError:
            raise _Conflict(f"integer {_show(v)} is too large for a double precision column") from None
    raise _Conflict(f"expected a number (double precision column), got {_kind(v)} {_show(v)}")


def _to_text(v: Any) -> Any:
    if type(v) is str:
        if "\x00" in v:
            raise _Conflict("a NUL character cannot be stored in text", "unstorable_value")
        return v
    raise _Conflict(f"expected a string (text column), got {_kind(v)} {_show(v)}")


def _to_boolean(v: Any) -> Any:
    if type(v) is bool:
        return v
    raise _Conflict(f"expected true or false (boolean column), got {_kind(v)} {_show(v)}")


def _to_float8_array(v: Any) -> Any:
    if type(v) is list:
        out: list[float | None] = []
        for x in v:
            t = type(x)
            if t is float or x is None:
                out.append(x)
            elif t is int:
                out.append(_to_float8(x))
            else:
                raise _Conflict(f"expected an array of numbers (double precision[] column), got an element {_show(x)}")
        return out
    raise _Conflict(f"expected an array of numbers (double precision[] column), got {_kind(v)} {_show(v)}")


_CONVERTERS: Final = {
    "bigint": _to_bigint,
    "float8": _to_float8,
    "text": _to_text,
    "boolean": _to_boolean,
    "float8[]": _to_float8_array,
    "jsonb": json_text,
}


def convert(type_: str, value: Any, path: str) -> Any:
    """``value`` as a column of ``type_`` takes it (None stays None): :class:`RecordError` ``type_conflict`` or
    ``unstorable_value`` at ``path`` when it does not fit (the rules payload values follow)."""
    if value is None:
        return None
    try:
        return _CONVERTERS[type_](value)
    except _Conflict as exc:
        raise RecordError(exc.code, path, exc.detail) from None


def _value_kind(value: Any) -> str | None:
    t = type(value)
    if value is None:
        return None
    if t is bool:
        return "boolean"
    if t is int:
        return "bigint" if _INT64_MIN <= value <= _INT64_MAX else "jsonb"
    if t is float:
        return "float8"
    if t is str:
        return "text"
    if t is list and all(type(x) in (int, float) for x in value):
        return "float8[]"
    return "jsonb"


def infer_type(values: Sequence[Any]) -> str | None:
    """The column type for these values (None when all are null): integer, float (integers and floats mixed),
    text, boolean, array of numbers; anything else, or a mix, is jsonb."""
    kinds = {k for k in map(_value_kind, values) if k is not None}
    if not kinds:
        return None
    if len(kinds) == 1:
        return kinds.pop()
    if kinds == {"bigint", "float8"}:
        return "float8"
    return "jsonb"


# Per column type, the test (on local ``v``) that a value can go to COPY as it is; when it fails, the slow
# converter either converts (int -> float) or raises _Conflict. None always passes.
_FAST_OK: Final = {
    "bigint": "(type(v) is int and -9223372036854775808 <= v <= 9223372036854775807)",
    "float8": "type(v) is float",
    "text": "(type(v) is str and '\\x00' not in v)",
    "boolean": "type(v) is bool",
    "float8[]": "False",
    "jsonb": "False",
}


class _ColumnConflict(Exception):
    def __init__(self, index: int, conflict: _Conflict) -> None:
        self.index = index
        self.conflict = conflict


def _row_builder(getters: Sequence[tuple[int, int, str]]) -> Any:
    """A function ``(scoring_id, i, head, extra, tail, r0, r1, r2) -> row tuple`` for one field layout.

    Generated Python (only integers and fixed type tests are spliced in, never a name from a record), so the
    hot path is one call a row with the type checks inlined. ``getters`` are (block, index, type) per column.
    """
    converters = [_CONVERTERS[t] for _, _, t in getters]

    def slow(j: int, v: Any) -> Any:
        try:
            return converters[j](v)
        except _Conflict as exc:
            raise _ColumnConflict(j, exc) from None

    lines = ["def build(scoring_id, i, head, extra, tail, r0, r1, r2):"]
    for j, (block, idx, type_) in enumerate(getters):
        if idx < 0:
            lines.append(f"    v{j} = None")
            continue
        fetch = f"r{block}[{idx}]" if block == 0 else f"(r{block}[{idx}] if r{block} is not None else None)"
        lines.append(f"    v = {fetch}")
        lines.append(f"    if v is not None and not {_FAST_OK[type_]}:")
        lines.append(f"        v = slow({j}, v)")
        lines.append(f"    v{j} = v")
    values = "".join(f", v{j}" for j in range(len(getters)))
    lines.append(f"    return (scoring_id, i, *head, extra, *tail{values})")
    namespace: dict[str, Any] = {"slow": slow}
    exec(compile("\n".join(lines), "<stream_logger.rows plan>", "exec"), namespace)
    return namespace["build"]


# Per column type, what the compiled path decodes into: exactly the values the converters let through unchanged, or
# change the way msgspec does (an integer into a float column becomes a float). jsonb columns are not compiled.
_COMPILED_TYPES: Final[dict[str, Any]] = {
    "bigint": envelope.Int64 | None,
    "float8": float | None,
    "text": str | None,
    "boolean": bool | None,
    "float8[]": list[float | None] | None,
}


@dataclass(frozen=True, slots=True)
class RowDecoder:
    """A whole record from JSON text straight to COPY rows, for one field layout of one subscription.

    msgspec checks the envelope, the field names and every value against its column's type in C, in one pass
    (:func:`envelope.shaped_decoder`). Anything it declines (another subscription or layout, a type conflict, a row
    of the wrong length, a value deeper than the compiled path covers) raises :data:`envelope.DECLINE_ERRORS`, or makes
    :meth:`rows` return None, and the record takes another decoder or the reference path
    (:func:`records.decode` then :meth:`Subscription.rows_for`), which gives the precise error, or the same rows.
    """

    decode: Callable[[bytes], Any]  # raises envelope.DECLINE_ERRORS
    select_columns: (
        Any  # the COPY columns from a row's blocks joined (plus a trailing None), or None when they are in order
    )
    arrays: tuple[int, ...]  # where the float8[] columns are among a row's columns (for csvcopy.line)

    def rows(self, scoring_id: str, system_values: tuple[Any, ...], env: Any, csv: bool = False) -> list[Any] | None:
        """Rows ``(scoring_id, row_index, *system_values, *columns)`` of a decoded record (CSV lines of them when
        ``csv``), or None to decline; ``row_index`` counts from the record's ``first_row``."""
        joined: list[tuple[Any, ...]] = env.request.values
        meta, response = env.request.meta, env.response
        select_columns = self.select_columns
        first = env.first_row or 0
        if len(joined) == 1:  # the common case, without the general case's intermediate lists
            row = joined[0]
            for block in (meta, response):
                if block is not None:
                    if len(block.values) != 1:
                        return None
                    row = row + block.values[0]
            if select_columns is not None:
                row = select_columns(row)
            return [
                csvcopy.line(scoring_id, first, system_values, row, self.arrays)
                if csv
                else (scoring_id, first, *system_values, *row)
            ]
        for block in (meta, response):
            if block is not None:
                rows: list[tuple[Any, ...]] = block.values
                if len(rows) != len(joined):
                    return None
                joined = [a + b for a, b in zip(joined, rows, strict=True)]
        if select_columns is not None:
            joined = [select_columns(row) for row in joined]
        if csv:
            return [csvcopy.line(scoring_id, i, system_values, row, self.arrays) for i, row in enumerate(joined, first)]
        return [(scoring_id, i, *system_values, *row) for i, row in enumerate(joined, first)]


def _row_decoder(subscription_id: str, getters: Sequence[tuple[int, int, str]], layout: Layout) -> RowDecoder | None:
    """The compiled decoder for a layout without extra fields, or None when a column type is not compiled."""
    if not getters or any(t not in _COMPILED_TYPES for _, idx, t in getters if idx >= 0):
        return None
    declared = {(block, idx): _COMPILED_TYPES[t] for block, idx, t in getters if idx >= 0}
    row_types: list[Any] = []
    offsets: list[int] = []
    width = 0
    for block, names in enumerate(layout):
        offsets.append(width)
        if names is None:
            row_types.append(None)
            continue
        row: Any = tuple.__class_getitem__(tuple(declared.get((block, i), envelope.Value) for i in range(len(names))))
        row_types.append(row)
        width += len(names)
    indices = [offsets[block] + idx if idx >= 0 else width for block, idx, _ in getters]
    select_columns: Any = None
    if indices == list(range(width)):
        select_columns = None
    elif len(indices) == 1:
        select_columns = lambda row, k=indices[0]: ((*row, None)[k],)  # noqa: E731  (itemgetter returns a bare value)
    else:
        getter = operator.itemgetter(*indices)
        select_columns = lambda row: getter((*row, None))  # noqa: E731
    arrays = tuple(j for j, (_, _, t) in enumerate(getters) if t == "float8[]")
    return RowDecoder(envelope.shaped_decoder(subscription_id, layout, row_types).decode, select_columns, arrays)


@dataclass(frozen=True, slots=True)
class _Plan:
    build: Any  # the compiled row builder, see _row_builder
    # (block, field name) per declared field, in column order: for error paths.
    names: tuple[tuple[int, str], ...]
    # (block index, index in the row, block name, field name) per undeclared field: goes to ``extra``.
    extras: tuple[tuple[int, int, str, str], ...]
    # the compiled path for this layout (None when it has extra fields or a column type it does not cover)
    decoder: RowDecoder | None


def _plan(sub: Subscription, key: Layout) -> _Plan:
    plan: _Plan | None = sub.plans.get(key)
    if plan is not None:
        return plan
    req_fields, meta_fields, resp_fields = key
    blocks = (req_fields, meta_fields or (), resp_fields or ())
    positions: list[dict[str, int]] = []
    for names in blocks:
        pos: dict[str, int] = {}
        for i, name in enumerate(names):
            pos.setdefault(name, i)
        positions.append(pos)
    getters: list[tuple[int, int, str]] = []
    declared: set[tuple[int, str]] = set()
    column_fields: list[tuple[int, str]] = []
    for f in sub.fields:
        block = SOURCES.index(f.source)
        declared.add((block, f.name))
        column_fields.append((block, f.name))
        getters.append((block, positions[block].get(f.name, -1), f.type))
    extras: list[tuple[int, int, str, str]] = []
    request_names = set(req_fields)
    for block, names in enumerate(blocks):
        for i, name in enumerate(names):
            if (block, name) in declared or positions[block][name] != i:
                continue
            if block == 2 and name in request_names:  # an echo of a request field
                continue
            extras.append((block, i, SOURCES[block], name))
    decoder = None if extras else _row_decoder(sub.subscription_id, getters, key)
    plan = _Plan(_row_builder(getters), tuple(column_fields), tuple(extras), decoder)
    if len(sub.plans) >= _PLAN_CACHE_SIZE:
        sub.plans.clear()
    sub.plans[key] = plan
    return plan


def row_decoder(sub: Subscription, layout: Layout) -> RowDecoder | None:
    """The compiled path for records of this field layout, if it covers them (see :class:`RowDecoder`)."""
    return _plan(sub, layout).decoder


def rows_for(sub: Subscription, record: ScoringRecord, source: Source, ingested_at: datetime) -> list[tuple[Any, ...]]:
    """One tuple per scored row of ``record``, in :attr:`Subscription.columns` order.

    Raises RecordError with code ``type_conflict`` (a value does not fit its column) or ``unstorable_value``
    (a NUL character), and a path such as ``request.values[2][Age]``.
    """
    plan = _plan(sub, record.layout)
    if "\x00" in record.scoring_id:
        raise RecordError("unstorable_value", "scoring_id", "a NUL character cannot be stored in text")
    head = _system_values(record)
    tail = (source.topic, source.partition, source.offset, ingested_at)
    meta = record.request_meta
    resp = record.response
    meta_values: list[list[Any]] = [] if meta is None else meta.values
    resp_values: list[list[Any]] = [] if resp is None else resp.values
    n_meta = len(meta_values)
    n_resp = len(resp_values)
    build = plan.build
    extras = plan.extras
    scoring_id = record.scoring_id
    first = record.first_row  # the row_index of its first row: not 0 for the further records of a split call
    rows: list[tuple[Any, ...]] = []
    for i, req_row in enumerate(record.request.values):
        meta_row = meta_values[i] if i < n_meta else None
        resp_row = resp_values[i] if i < n_resp else None
        extra_json = None
        if extras:
            blocks = (req_row, meta_row, resp_row)
            extra: dict[str, dict[str, Any]] = {}
            for block, idx, block_name, name in extras:
                row = blocks[block]
                if row is not None:
                    extra.setdefault(block_name, {})[name] = row[idx]
            if extra:
                try:
                    extra_json = json_text(extra)
                except _Conflict as exc:
                    raise RecordError(exc.code, f"{_PATH_PREFIX[0]}[{i}]", f"extra: {exc.detail}") from None
        try:
            rows.append(build(scoring_id, first + i, head, extra_json, tail, req_row, meta_row, resp_row))
        except _ColumnConflict as exc:
            block, name = plan.names[exc.index]
            path = f"{_PATH_PREFIX[block]}[{i}][{name}]"
            raise RecordError(exc.conflict.code, path, exc.conflict.detail) from None
    return rows


_DRIVER_INFINITIES: Final = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def partition_day(scoring_timestamp: datetime) -> date:
    """The UTC day of a record's timestamp, which names its partition of the payload table.

    Raises RecordError (``unstorable_value``) for a timestamp :func:`utc_instant` refuses: no daily partition can be
    named for it, or the driver would write it as an infinity.
    """
    if scoring_timestamp.tzinfo is UTC and 1 < scoring_timestamp.year < 9999:  # the common case, on the hot path
        return scoring_timestamp.date()
    return utc_instant(scoring_timestamp, "scoring_timestamp").date()


def utc_instant(value: datetime, path: str) -> datetime:
    """``value`` in UTC, as a timestamptz column stores it.

    Raises RecordError (``unstorable_value``) at ``path`` for two kinds of valid v1 timestamps the datamart cannot
    store as they are: one whose UTC instant falls outside years 1 to 9999 (``0001-01-01T00:30:00+01:00``), and the
    two instants asyncpg writes as ``-infinity`` and ``infinity`` in binary COPY (``0001-01-01T00:00:00Z`` and
    ``9999-12-31T23:59:59.999999Z``).
    """
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise RecordError("unstorable_value", path, "falls outside years 0001 to 9999 in UTC") from None
    if utc in _DRIVER_INFINITIES:
        raise RecordError(
            "unstorable_value", path, "is the first or last instant of years 0001 to 9999, which the database "
            "driver writes as -infinity or infinity"
        )  # fmt: skip
    return utc


def _to_int32(v: Any) -> Any:
    if type(v) is int and _INT32_MIN <= v <= _INT32_MAX:
        return v
    raise _Conflict(f"expected a 32-bit integer, got {_show(v)}")


_SYSTEM_CONVERTERS: Final = {"text": _to_text, "integer": _to_int32, "double precision": _to_float8}
"""How a nullable system column takes a record's value, by the column's SQL type."""

_NULLABLE_COLUMNS: Final = tuple(
    (name, _SYSTEM_CONVERTERS[column_type(SYSTEM_COLUMN_DEFINITIONS[name])]) for name in NULLABLE_FIELDS
)
"""The record's optional fields stored as they are (or None), each with its column's converter."""


def _system_values(record: ScoringRecord) -> tuple[Any, ...]:
    """The per-record system columns from scoring_timestamp to tags, from a record's (validated) values.

    Raises RecordError: ``unstorable_value`` for a NUL character, ``type_conflict`` for a number PostgreSQL's column
    cannot hold. (The compiled path, ``fast_rows.py``, lays the same columns out from values its types have checked.)
    """
    path = "deployment_id"
    try:
        values: list[Any] = [record.scoring_timestamp, _to_text(record.deployment_id)]
        for (name, convert), value in zip(_NULLABLE_COLUMNS, envelope.nullable_values(record), strict=True):
            if value is not None:
                path = name
                value = convert(value)
            values.append(value)
        path = "sampling_rate"
        values.append(_to_float8(record.sampling_rate))
        path = "tags"
        values.append(json_text(record.tags) if record.tags else None)
    except _Conflict as exc:
        raise RecordError(exc.code, path, exc.detail) from None
    return tuple(values)
