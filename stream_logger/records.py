"""The scoring record v1: the Kafka message a model service publishes for every scoring call.

Decode bytes into a validated :class:`ScoringRecord` (or raise :class:`~stream_logger.errors.RecordError`);
``stream_logger.encoding`` writes one. No I/O here. The contract is ``schemas/scoring_record.v1.json``; this module is
a hand-written validator for the same rules (plus the cross-field rules a JSON Schema cannot express, listed in
the schema's description), and ``tests/unit/test_schema_agreement.py`` checks that the two agree.

Decisions worth knowing:

- A value in a ``values`` row may be any JSON value (the datamart types its column from it, else stores it as
  JSON); container values may nest at most :data:`MAX_VALUE_DEPTH` levels.
- Optional fields may be ``null``, meaning absent.
- Names (field names, ``subscription_id``, ``deployment_id``, the other ids, tag names) never hold a NUL character,
  which PostgreSQL cannot store in the registry that keeps them.
- ``subscription_id`` is read in Unicode NFKC form, so ids that differ only in their encoding of a character
  (``café`` written with one code point or two, a full-width letter) name one subscription; an id holding an
  invisible character (:data:`INVISIBLE_CHARACTERS`: controls, zero-width and bidirectional marks, the BOM) is
  refused, so no two subscriptions can look the same in a listing.
- Integer fields (``schema_version``, ``status_code``) accept ``404.0`` as JSON Schema does; ``true`` is never a
  number.
- Timestamps must match :data:`TIMESTAMP_PATTERN` (RFC 3339 with an offset, a real calendar date, no leap
  second); digits past the microsecond are dropped.
- :func:`decode` trusts orjson for JSON itself (it refuses NaN, Infinity and bad UTF-8; integers past 64 bits
  become floats). :func:`from_obj` checks that as well, and refuses integers that do not fit 64 bits.
- ``encoding.encode`` does not validate (it is on the serving path): non-finite floats, as orjson writes them, become
  ``null``. ``from_obj(encoding.to_obj(record))`` validates a record built by hand.

Two paths, one contract. :func:`decode` first tries a compiled path: msgspec decodes the bytes straight into typed
structs, checking types, lengths and ranges in C, and a few lines of Python check the cross-field rules. It covers
the records streams are made of (values that are scalars, or arrays or objects of scalars). Anything it does not
accept, for any reason, goes to the hand-written validator, which is the reference: it alone writes error
messages, and it decides every record the compiled path declines. The compiled path never accepts a record the
reference refuses, and builds the same record when both accept (``tests/unit/test_compiled.py``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal, NoReturn

import msgspec
import orjson
from msgspec import Meta

from .errors import RecordError

__all__ = [
    "DEFAULT_DEPLOYMENT_ID",
    "DEFAULT_MAX_RECORD_BYTES",
    "ERROR_CODES",
    "INVISIBLE_CHARACTERS",
    "MAX_FIELDS",
    "MAX_NAME_CHARS",
    "MAX_ROWS",
    "MAX_SCORING_ID_CHARS",
    "MAX_TAGS",
    "MAX_VALUE_DEPTH",
    "SUBSCRIPTION_ID_PATTERN",
    "TIMESTAMP_PATTERN",
    "ScoringRecord",
    "Table",
    "decode",
    "from_obj",
]

DEFAULT_DEPLOYMENT_ID: Final = "generic_deployment"
MAX_FIELDS: Final = 1000
"""At most this many fields in ``request``, ``request.meta`` and ``response`` together (PostgreSQL allows 1600
columns a table)."""
MAX_ROWS: Final = 10_000
"""At most this many scored rows in one record."""
MAX_NAME_CHARS: Final = 256
"""Longest field name, subscription id or deployment id accepted (also asset revision, user, request and trace
ids, and tag names)."""
MAX_TAGS: Final = 100
"""At most this many ``tags``."""
MAX_SCORING_ID_CHARS: Final = 128
"""Longest ``scoring_id``."""
MAX_VALUE_DEPTH: Final = 64
"""How deep a value in a ``values`` row may nest arrays and objects (orjson writes at most 254 levels)."""
DEFAULT_MAX_RECORD_BYTES: Final = 8 * 1024 * 1024
"""The default largest message value :func:`decode` accepts (Kafka's own default limit is 1 MiB)."""

TIMESTAMP_PATTERN: Final = (
    r"^(?!0000)(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$(?!\n)"
)
"""RFC 3339 date-time with an offset, as a regular expression that means the same in ECMA 262 (JSON Schema) and
Python: real calendar dates only (leap years included), year 0001-9999, no leap second. ``$(?!\\n)`` because
Python's ``$`` also matches before a final newline."""

INVISIBLE_CHARACTERS: Final = (
    r"\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
)
"""The characters (as a regular-expression class body) a ``subscription_id`` may not hold in the Basic Multilingual
Plane: controls, format characters such as zero-width spaces and bidirectional overrides, and other default-ignorable
code points. The tag characters U+E0000-U+E0FFF are refused too (the schema's description says so)."""

SUBSCRIPTION_ID_PATTERN: Final = f"^[^{INVISIBLE_CHARACTERS}]*$"
"""The schema's pattern for ``subscription_id``."""

ERROR_CODES: Final = frozenset(
    {
        "empty_message",  # a tombstone (null value) or zero-length value
        "too_large",  # the value exceeds the configured maximum record size
        "malformed_json",  # not UTF-8 JSON, or not an object
        "unsupported_version",  # schema_version is not 1
        "invalid_record",  # valid JSON that breaks the v1 contract (missing field, wrong type, ...)
        "unknown_subscription",  # auto-registration is off and the subscription is not declared
        "type_conflict",  # a value does not fit its column's declared type
        "unstorable_value",  # PostgreSQL refused a value (NUL character, number out of range, ...)
        "subscription_limit",  # a new subscription past the worker's limit on auto-registered ones
        "timestamp_out_of_window",  # scoring_timestamp too far before or after the worker's clock
        "internal_error",  # storing it raised an unexpected error (a bug, a refused statement): it costs only itself
    }
)
"""The dead-letter reasons: the ``error_code`` column of the dead-letter table takes one of these."""


@dataclass(slots=True)
class Table:
    """A ``{"fields": [...], "values": [[...], ...]}`` block: every row as long as ``fields``."""

    fields: list[str]
    values: list[list[Any]]


@dataclass(slots=True)
class ScoringRecord:
    """One scoring call: the request the model saw, and its response (absent for a failed call)."""

    scoring_id: str
    scoring_timestamp: datetime  # always timezone-aware
    subscription_id: str
    request: Table
    response: Table | None = None
    request_meta: Table | None = None
    deployment_id: str = DEFAULT_DEPLOYMENT_ID
    asset_revision: str | None = None
    response_time_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    sampling_rate: float = 1.0
    user_id: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    schema_version: int = 1

    @property
    def row_count(self) -> int:
        """How many rows this call scored (one datamart row each)."""
        return len(self.request.values)

    @property
    def failed(self) -> bool:
        """Whether the record logs a failed call (``status_code`` >= 400 or ``error`` set)."""
        return self.error is not None or (self.status_code is not None and self.status_code >= 400)


# ---------------------------------------------------------------------------------------------------- decoding


def decode(value: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> ScoringRecord:
    """Decode a Kafka message value into a validated record.

    Raises :class:`RecordError` whose ``code`` is ``empty_message``, ``too_large``, ``malformed_json``,
    ``unsupported_version`` or ``invalid_record``, with the ``path`` of the offending part.
    """
    if not value:
        raise RecordError("empty_message", "", "the message has no value (a tombstone or zero bytes)")
    if len(value) > max_bytes:
        raise RecordError("too_large", "", f"{len(value)} bytes; at most {max_bytes} accepted")
    record = _decode_compiled(value)
    return record if record is not None else _decode_reference(value)


def _decode_reference(value: bytes) -> ScoringRecord:
    """The hand-written validator: every record, every error message."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("malformed_json", "", f"not UTF-8 JSON: {exc}") from None
    if type(obj) is not dict:
        raise RecordError("malformed_json", "", f"the value is JSON {_json_kind(obj)}, not an object")
    # A value nested too deep needs as many brackets: count them (fast) before looking for one (slow).
    return _build(obj, value.count(b"[") + value.count(b"{") > MAX_VALUE_DEPTH)


def from_obj(obj: Any) -> ScoringRecord:
    """Validate an already-parsed JSON object (dicts, lists, str, int, float, bool, None) into a record.

    Stricter than :func:`decode` about what JSON cannot hold: NaN and infinities, integers beyond 64 bits,
    non-string keys, lone surrogates and other Python types are refused. The record shares ``obj``'s lists.
    """
    if not isinstance(obj, dict):
        raise RecordError("malformed_json", "", f"the value is {_a_kind(obj)}, not an object")
    _check_version(obj)
    _check_json(obj)
    return _build(obj, True)


_MISSING: Final[Any] = object()
_INF: Final = float("inf")
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1  # orjson reads and writes unsigned 64-bit integers too
_TIMESTAMP: Final = re.compile(TIMESTAMP_PATTERN)
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_INVISIBLE: Final = re.compile(f"[{INVISIBLE_CHARACTERS}\U000e0000-\U000e0fff]")
_TOP_KEYS: Final = frozenset(
    {
        "schema_version",
        "scoring_id",
        "scoring_timestamp",
        "subscription_id",
        "request",
        "response",
        "deployment_id",
        "asset_revision",
        "response_time_ms",
        "status_code",
        "error",
        "sampling_rate",
        "user_id",
        "request_id",
        "trace_id",
        "tags",
    }
)
_REQUEST_KEYS: Final = frozenset({"fields", "values", "meta"})
_TABLE_KEYS: Final = frozenset({"fields", "values"})
_OPTIONAL_NAMES: Final = ("asset_revision", "user_id", "request_id", "trace_id")
_CONTAINERS: Final = (list, dict)


def _fail(path: str, detail: str, code: str = "invalid_record") -> NoReturn:
    raise RecordError(code, path, detail)


def _show(text: str, limit: int = 40) -> str:
    """A user-supplied string quoted for an error message: cut short, lone surrogates escaped."""
    shown = json.dumps(text[:limit], ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
    return shown if len(text) <= limit else shown + "…"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _key_path(prefix: str, key: str) -> str:
    """``prefix.key`` for a plain key, else ``prefix["the key"]``."""
    if _PLAIN_KEY.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{_show(key)}]"


def _valid_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _a_kind(value: Any) -> str:
    """``"an array"``, ``"a string"``, ``"null"``, ... for an error message."""
    kind = _json_kind(value)
    return kind if kind == "null" else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_version(obj: dict[str, Any]) -> None:
    version = obj.get("schema_version", _MISSING)
    if version is _MISSING:
        _fail("schema_version", "required")
    if version != 1 or isinstance(version, bool):
        if isinstance(version, int | float) and not isinstance(version, bool):
            _fail("schema_version", f"version {version!r} is not supported; this reader knows 1", "unsupported_version")
        _fail("schema_version", f"must be the number 1, not {_a_kind(version)}")


def _build(obj: dict[str, Any], check_depth: bool) -> ScoringRecord:
    """Validate a dict of JSON values against the v1 contract; ``check_depth`` looks for over-nested values."""
    version = obj.get("schema_version", _MISSING)
    if version != 1 or type(version) is bool:
        _check_version(obj)
    if not _TOP_KEYS.issuperset(obj):
        unknown = sorted(key for key in obj if key not in _TOP_KEYS)
        _fail(_key_path("", unknown[0]), "unknown field (a typo? v1 allows: " + ", ".join(sorted(_TOP_KEYS)) + ")")
    get = obj.get

    scoring_id = get("scoring_id", _MISSING)
    if type(scoring_id) is not str or not 0 < len(scoring_id) <= MAX_SCORING_ID_CHARS:
        _check_name(scoring_id, "scoring_id", MAX_SCORING_ID_CHARS)
    subscription_id = get("subscription_id", _MISSING)
    if type(subscription_id) is not str or not 0 < len(subscription_id) <= MAX_NAME_CHARS:
        _check_name(subscription_id, "subscription_id", MAX_NAME_CHARS)
    if not (subscription_id.isascii() and subscription_id.isprintable()):
        subscription_id = _subscription_id(subscription_id)
    timestamp = get("scoring_timestamp", _MISSING)
    try:
        if type(timestamp) is not str or _TIMESTAMP.match(timestamp) is None:
            raise ValueError
        timestamp = datetime.fromisoformat(timestamp)
    except ValueError:
        timestamp = _timestamp(timestamp)

    request_obj = get("request", _MISSING)
    if request_obj is _MISSING:
        _fail("request", "required")
    request = _table(request_obj, "request", _REQUEST_KEYS, check_depth)
    rows = len(request.values)
    field_count = len(request.fields)
    meta = None
    meta_obj = request_obj.get("meta")
    if meta_obj is not None:
        meta = _table(meta_obj, "request.meta", _TABLE_KEYS, check_depth)
        _same_rows(meta, rows, "request.meta.values")
        field_count += len(meta.fields)

    status_code = get("status_code")
    if status_code is not None:
        status_code = _integer(status_code, "status_code", 100, 599)
    error = get("error")
    if error is not None and (type(error) is not str or not error):
        _check_name(error, "error", None)
    response = None
    response_obj = get("response")
    if response_obj is not None:
        response = _table(response_obj, "response", _TABLE_KEYS, check_depth)
        _same_rows(response, rows, "response.values")
        field_count += len(response.fields)
    elif error is None and (status_code is None or status_code < 400):
        _fail("response", "required unless the record logs a failed call (status_code >= 400 or error set)")
    if field_count > MAX_FIELDS:
        _fail("", f"{field_count} fields in request, request.meta and response together; at most {MAX_FIELDS}")

    deployment_id = get("deployment_id")
    if deployment_id is None:
        deployment_id = DEFAULT_DEPLOYMENT_ID
    elif type(deployment_id) is not str or not 0 < len(deployment_id) <= MAX_NAME_CHARS or "\x00" in deployment_id:
        _check_name(deployment_id, "deployment_id", MAX_NAME_CHARS)
    asset_revision = get("asset_revision")
    user_id = get("user_id")
    request_id = get("request_id")
    trace_id = get("trace_id")
    if not (asset_revision is user_id is request_id is trace_id is None):
        for key in _OPTIONAL_NAMES:
            name = get(key)
            if name is not None and (type(name) is not str or not 0 < len(name) <= MAX_NAME_CHARS or "\x00" in name):
                _check_name(name, key, MAX_NAME_CHARS)

    response_time_ms = get("response_time_ms")
    if response_time_ms is not None and (type(response_time_ms) is not float or not 0 <= response_time_ms < _INF):
        response_time_ms = _number(response_time_ms, "response_time_ms")
        if not response_time_ms >= 0:
            _fail("response_time_ms", f"{response_time_ms!r} is negative")
    sampling_rate = get("sampling_rate")
    if sampling_rate is None:
        sampling_rate = 1.0
    elif type(sampling_rate) is not float or not 0 < sampling_rate <= 1:
        sampling_rate = _number(sampling_rate, "sampling_rate")
        if not 0 < sampling_rate <= 1:
            _fail("sampling_rate", f"{sampling_rate!r} is outside 0 < rate <= 1")
    tags = get("tags")
    if tags is None:
        tags = {}
    elif type(tags) is not dict or tags:
        _check_tags(tags)

    return ScoringRecord(
        scoring_id,
        timestamp,
        subscription_id,
        request,
        response,
        meta,
        deployment_id,
        asset_revision,
        response_time_ms,
        status_code,
        error,
        sampling_rate,
        user_id,
        request_id,
        trace_id,
        tags,
        1,
    )


def _check_name(value: Any, path: str, max_chars: int | None) -> None:
    """Raise unless ``value`` is a non-empty string of at most ``max_chars`` characters (slow path)."""
    if value is _MISSING:
        _fail(path, "required")
    if not isinstance(value, str):
        _fail(path, f"must be a string, not {_a_kind(value)}")
    if not value:
        _fail(path, "must not be empty")
    if max_chars is not None and len(value) > max_chars:
        _fail(path, f"{len(value)} characters; at most {max_chars}")
    if "\x00" in value:
        _fail(path, f"{_show(value)} holds a NUL character, which a name cannot hold")


def _subscription_id(text: str) -> str:
    """A subscription id in NFKC form; refused when it holds an invisible character or grows too long."""
    invisible = _INVISIBLE.search(text)
    if invisible is not None:
        code_point = f"U+{ord(invisible[0]):04X}"
        what = "a NUL character" if code_point == "U+0000" else f"an invisible or control character ({code_point})"
        shown = _show(text).encode("ascii", "backslashreplace").decode()  # the invisible made visible
        _fail("subscription_id", f"{shown} holds {what}; subscription ids must look like what they are")
    normal = unicodedata.normalize("NFKC", text)
    if len(normal) > MAX_NAME_CHARS:
        _fail("subscription_id", f"{len(normal)} characters in NFKC form; at most {MAX_NAME_CHARS}")
    return normal


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        _check_name(value, "scoring_timestamp", None)
    if _TIMESTAMP.match(value) is None:
        _fail("scoring_timestamp", f"{_show(value)} is not an RFC 3339 date-time with an offset")
    try:
        return datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError as exc:  # not expected once the pattern matched: still say so as a record error
        _fail("scoring_timestamp", f"{_show(value)}: {exc}")


def _table(value: Any, path: str, keys: frozenset[str], check_depth: bool) -> Table:
    if type(value) is not dict and not isinstance(value, dict):
        _fail(path, f'must be an object {{"fields": [...], "values": [[...], ...]}}, not {_a_kind(value)}')
    if not keys.issuperset(value):
        unknown = sorted(key for key in value if key not in keys)[0]
        _fail(_key_path(path, unknown), "unknown field; allowed: " + ", ".join(sorted(keys)))
    fields = value.get("fields", _MISSING)
    if type(fields) is not list or fields != _fields_last.get(path):  # comparing beats hashing
        try:
            known = type(fields) is list and tuple(fields) in _fields_seen
        except TypeError:  # an unhashable item: not a name
            known = False
        if not known:
            _check_fields(fields, f"{path}.fields")
            _remember_fields(fields)
        _fields_last[path] = list(fields)  # a copy: the record's own list may change later
    width = len(fields)
    rows = value.get("values", _MISSING)
    if type(rows) is not list or not 0 < len(rows) <= MAX_ROWS:
        _check_rows(rows, f"{path}.values")
    for row in rows:
        if type(row) is not list or len(row) != width:
            _check_rows(rows, f"{path}.values")
            _check_row_values(rows, width, path)
    if check_depth:
        for row in rows:
            if not set(map(type, row)).isdisjoint(_CONTAINERS):
                _check_row_values(rows, width, path)
    return Table(fields, rows)


# Field-name lists already found valid (most streams repeat a few), and the last one per block.
_fields_seen: set[tuple[str, ...]] = set()
_fields_last: dict[str, list[str]] = {}
_fields_seen_chars = 0
_FIELDS_SEEN_MAX_CHARS: Final = 1 << 22


def _remember_fields(fields: list[str]) -> None:
    """Remember a valid list of field names, within a bounded memory."""
    global _fields_seen_chars
    chars = sum(map(len, fields))
    if _fields_seen_chars + chars > _FIELDS_SEEN_MAX_CHARS:
        _fields_seen.clear()
        _fields_seen_chars = 0
    _fields_seen.add(tuple(fields))
    _fields_seen_chars += chars


def _check_fields(fields: Any, path: str) -> None:
    if fields is _MISSING:
        _fail(path, "required")
    if not isinstance(fields, list):
        _fail(path, f"must be an array of field names, not {_a_kind(fields)}")
    if not 0 < len(fields) <= MAX_FIELDS:
        _fail(path, f"{len(fields)} field names; 1 to {MAX_FIELDS} allowed")
    seen: dict[str, int] = {}
    for index, name in enumerate(fields):
        _check_name(name, f"{path}[{index}]", MAX_NAME_CHARS)
        if name in seen:
            _fail(f"{path}[{index}]", f"duplicate field name {_show(name)} (also at [{seen[name]}])")
        seen[name] = index


def _check_rows(rows: Any, path: str) -> None:
    if rows is _MISSING:
        _fail(path, "required")
    if not isinstance(rows, list):
        _fail(path, f"must be an array of rows, not {_a_kind(rows)}")
    if not 0 < len(rows) <= MAX_ROWS:
        _fail(path, f"{len(rows)} rows; 1 to {MAX_ROWS} allowed")
    for index, row in enumerate(rows):
        if not isinstance(row, list):
            _fail(f"{path}[{index}]", f"a row must be an array of values, not {_a_kind(row)}")


def _check_row_values(rows: list[list[Any]], width: int, path: str) -> None:
    """Raise for the first row of the wrong length or value nested too deep (slow path)."""
    for index, row in enumerate(rows):
        if len(row) != width:
            _fail(f"{path}.values[{index}]", f"{_count(len(row), 'value')} for {_count(width, 'field')}")
        for column, value in enumerate(row):
            if isinstance(value, _CONTAINERS) and _depth(value) > MAX_VALUE_DEPTH:
                _fail(f"{path}.values[{index}][{column}]", f"nests deeper than {MAX_VALUE_DEPTH} levels")


def _depth(value: Any) -> int:
    """How many levels of arrays and objects ``value`` nests (0 for a scalar), without recursing."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list | dict):
            if level > deepest:
                deepest = level
                if deepest > MAX_VALUE_DEPTH:
                    break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _same_rows(table: Table, rows: int, path: str) -> None:
    if len(table.values) != rows:
        _fail(path, f"{_count(len(table.values), 'row')} for the request's {rows}")


def _integer(value: Any, path: str, low: int, high: int) -> int:
    if type(value) is not int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema counts 404.0 as an integer
        elif not isinstance(value, int) or isinstance(value, bool):
            _fail(path, f"must be an integer, not {_show_value(value)}")
    if not low <= value <= high:
        _fail(path, f"{value} is outside {low}..{high}")
    return int(value)


def _number(value: Any, path: str) -> float:
    if type(value) is float:
        if value != value or value in (_INF, -_INF):
            _fail(path, f"{value!r} is not a finite number")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(path, f"must be a number, not {_show_value(value)}")
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        _fail(path, "integer beyond 64 bits")
    return _number(float(value), path)


def _show_value(value: Any) -> str:
    return f"a string {_show(value)}" if isinstance(value, str) else _a_kind(value)


def _check_tags(tags: Any) -> None:
    if not isinstance(tags, dict):
        _fail("tags", f"must be an object of strings, not {_a_kind(tags)}")
    if len(tags) > MAX_TAGS:
        _fail("tags", f"{len(tags)} tags; at most {MAX_TAGS}")
    for key, value in tags.items():
        if not 0 < len(key) <= MAX_NAME_CHARS or "\x00" in key:
            _fail(_key_path("tags", key), f"a tag name must have 1 to {MAX_NAME_CHARS} characters, none of them NUL")
        if not isinstance(value, str):
            _fail(_key_path("tags", key), f"a tag value must be a string, not {_a_kind(value)}")


def _check_json(obj: Any) -> None:
    """Raise unless ``obj`` is made only of what JSON can carry (finite numbers, 64-bit integers, ...)."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            if not value.isascii() and not _valid_utf8(value):
                _fail(path, "a string with a lone surrogate is not valid UTF-8")
        elif isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                _fail(path, "integer beyond 64 bits")
        elif isinstance(value, float):
            if value != value or value in (_INF, -_INF):
                _fail(path, f"{value!r} is not valid JSON")
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    _fail(path, f"object keys must be strings, not {type(key).__name__}")
                if not key.isascii() and not _valid_utf8(key):
                    _fail(path, "a key with a lone surrogate is not valid UTF-8")
                stack.append((item, _key_path(path, key)))
        else:
            _fail(path, f"a {type(value).__name__} is not a JSON value")


# ------------------------------------------------------------------------------------- the compiled fast path

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
"""A compiled-path integer (msgspec bounds stop at int64: an unsigned 64-bit value takes the reference path)."""
_Scalar = Int64 | float | str | bool | None
Value = _Scalar | list[_Scalar] | dict[str, _Scalar]
"""A value in a ``values`` row as the compiled path covers it: two levels at most, never deeper than MAX_VALUE_DEPTH."""
_Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
_FIELDS: Final = msgspec.json.Decoder(Annotated[list[_Name], Meta(min_length=1, max_length=MAX_FIELDS)])
_ROWS: Final = msgspec.json.Decoder(Annotated[list[list[Value]], Meta(min_length=1, max_length=MAX_ROWS)])


class RawTable(msgspec.Struct, forbid_unknown_fields=True):
    """A block whose ``fields`` and ``values`` are still JSON text (see :func:`field_names` and :func:`rows_of`)."""

    fields: msgspec.Raw
    values: msgspec.Raw


class RawRequest(msgspec.Struct, forbid_unknown_fields=True):
    fields: msgspec.Raw
    values: msgspec.Raw
    meta: RawTable | None = None


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A record checked in C except for its blocks' contents (left as JSON text) and the cross-field rules.

    ``scoring_timestamp`` is still text, and absent optional fields are None (no defaults filled in).
    """

    schema_version: Literal[1]
    scoring_id: Annotated[str, Meta(min_length=1, max_length=MAX_SCORING_ID_CHARS)]
    scoring_timestamp: str
    subscription_id: _Name
    request: RawRequest
    response: RawTable | None = None
    deployment_id: _Name | None = None
    asset_revision: _Name | None = None
    response_time_ms: Annotated[float, Meta(ge=0)] | None = None
    status_code: Annotated[int, Meta(ge=100, le=599)] | None = None
    error: Annotated[str, Meta(min_length=1)] | None = None
    sampling_rate: Annotated[float, Meta(gt=0, le=1)] | None = None
    user_id: _Name | None = None
    request_id: _Name | None = None
    trace_id: _Name | None = None
    tags: Annotated[dict[_Name, str], Meta(max_length=MAX_TAGS)] | None = None


_ENVELOPE: Final = msgspec.json.Decoder(Envelope)
DECLINED: Final = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)
"""What a compiled decoder raises when it declines a value (the reference validator then decides).

RecursionError too: msgspec spends a level of the interpreter's recursion limit on each level of JSON it reads,
even one it only skips (inside a ``msgspec.Raw`` block), so about 2 kB of brackets there exceed it. The reference
does not recurse in Python: orjson has a fixed depth limit of its own (``malformed_json`` past it), and the validator
refuses a shallower record for what it holds (``invalid_record``)."""


MISREAD_MIN_DIGITS: Final = 8192
"""The fewest digits in a row that make :func:`numbers_read_exactly` false: no shorter message is misread."""


def numbers_read_exactly(value: bytes) -> bool:
    """Whether msgspec reads every number in the message ``value`` as JSON means it; when not, the compiled paths
    decline ``value``.

    msgspec (0.23) reads at most five digits of an exponent, so that ``0.<9999 zeros>1e1000000``, which is too
    large for a float, decodes as ``1.0``, and ``0.<99999 zeros>1e100000`` (``1.0``) as ``0.0``. A sixth digit
    changes a finite result only after some 9,700 digits before it, so a message with 8,192 digits in a row is
    declined (no real record holds one). Such a run covers two offsets ``k`` and ``k + 4096`` where ``k`` is a
    multiple of 4096: only the bytes between those of such pairs that are both digits are looked at.
    """
    step = MISREAD_MIN_DIGITS // 2
    for k in range(0, len(value) - step, step):
        if 0x30 <= value[k] <= 0x39 and 0x30 <= value[k + step] <= 0x39 and value[k : k + step + 1].isdigit():
            return False
    return True


def shaped_decoder(subscription_id: str, layout: LayoutKey, row_types: Sequence[Any]) -> msgspec.json.Decoder[Any]:
    """A decoder of whole records of one subscription and field layout, each block's rows typed by ``row_types``
    (one per block of ``layout``, None for an absent block): the compiled sink path, in one pass.

    It accepts a record only where :data:`Envelope` does, with exactly this subscription id and these field names
    (``layout`` must come from :func:`layout_of`), and rows of exactly these types. The caller still checks what
    a type cannot say: equal row counts across blocks, and :func:`logs_a_call`.
    """
    request_names, meta_names, response_names = layout
    request_rows, meta_rows, response_rows = row_types

    def block(name: str, names: tuple[str, ...] | None, row: Any, *extra: Any) -> Any:
        if names is None:
            return None
        fields: Any = tuple.__class_getitem__(tuple(Literal[n] for n in names))
        values = Annotated[list[row], Meta(min_length=1, max_length=MAX_ROWS)]
        return msgspec.defstruct(
            name, [("fields", fields), ("values", values), *extra], forbid_unknown_fields=True, gc=False
        )

    meta = block("Meta", meta_names, meta_rows)
    response = block("Response", response_names, response_rows)
    # A block of the layout is required; one it lacks must be absent or null.
    shaped: dict[str, tuple[Any, ...]] = {
        "subscription_id": (Literal[subscription_id],),
        "request": (block("Request", request_names, request_rows, ("meta", meta) if meta else ("meta", None, None)),),
        "response": (response,) if response else (None, None),
    }
    fields: list[Any] = []
    for f in msgspec.structs.fields(Envelope):
        spec = shaped.get(f.name) or ((f.type,) if f.required else (f.type, f.default))
        fields.append((f.name, *spec))
    # gc=False: a decoded record holds strings, numbers and lists, never itself; the collector need not scan it.
    return msgspec.json.Decoder(msgspec.defstruct("Shaped", fields, forbid_unknown_fields=True, gc=False))


def logs_a_call(env: Any) -> bool:
    """The cross-field rule on an envelope: a record without a response logs a failed call (an error or a status
    of 400 or more)."""
    return env.response is not None or env.error is not None or (env.status_code is not None and env.status_code >= 400)


def envelope(value: bytes) -> Envelope | None:
    """The record's envelope when the compiled path can vouch for it (None: ask :func:`decode`).

    Checked here: everything outside the blocks' ``fields`` and ``values``, and that a record without a response
    logs a failed call. The caller checks the blocks (:func:`field_names`, :func:`rows_of`, equal row counts, at
    most :data:`MAX_FIELDS` names) and parses the timestamp (:func:`timestamp_of`).
    """
    try:
        env = _ENVELOPE.decode(value)
    except DECLINED:
        return None
    return env if logs_a_call(env) else None


def with_defaults(env: Any) -> tuple[str, float, dict[str, str]]:
    """An envelope's ``deployment_id``, ``sampling_rate`` and ``tags``, with v1's defaults for absent (or null) ones."""
    deployment_id, sampling_rate, tags = env.deployment_id, env.sampling_rate, env.tags
    return (
        DEFAULT_DEPLOYMENT_ID if deployment_id is None else deployment_id,
        1.0 if sampling_rate is None else sampling_rate,
        {} if tags is None else tags,
    )


def timestamp_of(env: Any) -> datetime | None:
    """The envelope's scoring timestamp, or None for the reference validator to judge."""
    text = env.scoring_timestamp
    if _TIMESTAMP.match(text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # a lower-case t or z: the reference knows
        return None


# Valid field-name lists by their JSON text: streams repeat a handful, so names are checked (and built) once.
_names_by_text: dict[bytes, tuple[str, ...]] = {}
_NAMES_BY_TEXT_MAX: Final = 4096


def field_names(raw: msgspec.Raw) -> tuple[str, ...] | None:
    """The field names in ``raw`` (a block's ``fields``) when they are valid and distinct, else None."""
    text = bytes(raw)
    names = _names_by_text.get(text)
    if names is None:
        try:
            names = tuple(_FIELDS.decode(text))
        except DECLINED:
            return None
        if len(set(names)) != len(names):
            return None
        if len(_names_by_text) >= _NAMES_BY_TEXT_MAX:
            _names_by_text.clear()
        _names_by_text[text] = names
    return names


LayoutKey = tuple[tuple[str, ...], tuple[str, ...] | None, tuple[str, ...] | None]
"""The field names of a record's request, meta and response blocks (None for an absent block)."""


def layout_of(env: Envelope) -> LayoutKey | None:
    """The field names of the request, its meta and the response (None for an absent block), when every present
    block's names are valid and there are at most :data:`MAX_FIELDS` in all; else None."""
    request, meta, response = env.request, env.request.meta, env.response
    names = field_names(request.fields)
    meta_names = None if meta is None else field_names(meta.fields)
    response_names = None if response is None else field_names(response.fields)
    if names is None or (meta is not None and meta_names is None) or (response is not None and response_names is None):
        return None
    if len(names) + len(meta_names or ()) + len(response_names or ()) > MAX_FIELDS:
        return None
    return names, meta_names, response_names


def rows_of(raw: msgspec.Raw, width: int) -> list[list[Any]] | None:
    """A block's ``values`` when every row holds ``width`` values of a kind the compiled path covers, else None."""
    try:
        rows: list[list[Any]] = _ROWS.decode(raw)
    except DECLINED:
        return None
    for row in rows:
        if len(row) != width:
            return None
    return rows


def _decode_compiled(value: bytes) -> ScoringRecord | None:
    """The record, when the compiled path can vouch for it; None sends ``value`` to the reference validator."""
    if b"\\u0000" in value:  # a NUL character, which no name may hold: the reference says whether one does
        return None
    # The length test first: on a short message a call would cost more than it.
    if len(value) >= MISREAD_MIN_DIGITS and not numbers_read_exactly(value):
        return None
    env = envelope(value)
    if env is None:
        return None
    subscription_id = env.subscription_id
    if not (subscription_id.isascii() and subscription_id.isprintable()):  # the reference normalises or refuses
        return None
    scoring_timestamp = timestamp_of(env)
    if scoring_timestamp is None:
        return None
    layout = layout_of(env)
    if layout is None:
        return None
    blocks: list[Table | None] = []
    count = None
    for raw, names in zip((env.request, env.request.meta, env.response), layout, strict=True):
        if raw is None or names is None:
            blocks.append(None)
            continue
        rows = rows_of(raw.values, len(names))
        if rows is None or (count is not None and len(rows) != count):
            return None
        count = len(rows)
        blocks.append(Table(list(names), rows))
    request, meta, response = blocks
    assert request is not None
    deployment_id, sampling_rate, tags = with_defaults(env)
    return ScoringRecord(
        env.scoring_id,
        scoring_timestamp,
        env.subscription_id,
        request,
        response,
        meta,
        deployment_id,
        env.asset_revision,
        env.response_time_ms,
        env.status_code,
        env.error,
        sampling_rate,
        env.user_id,
        env.request_id,
        env.trace_id,
        tags,
        1,
    )
