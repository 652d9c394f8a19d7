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
reference refuses, and builds the same record when both accept (``tests/unit/test_fast_rows.py``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from typing import Any, Final, NoReturn

import orjson

from .contract import (
    DEFAULT_DEPLOYMENT_ID,
    DEFAULT_MAX_RECORD_BYTES,
    FEEDBACK_KEYS,
    FEEDBACK_KIND,
    ID_FIELDS,
    INVISIBLE_CHARACTERS,
    MAX_CALL_ROWS,
    MAX_FIELDS,
    MAX_NAME_CHARS,
    MAX_ROWS,
    MAX_SCORING_ID_CHARS,
    MAX_TAGS,
    MAX_VALUE_DEPTH,
    RECORD_KEYS,
    TIMESTAMP_PATTERN,
    ScoringRecord,
    Table,
)
from .envelope import KNOWN_NAMES, decode_fast
from .errors import RecordError

__all__ = [
    "MISSING",
    "TABLE_KEYS",
    "check_name",
    "check_version",
    "decode",
    "decode_reference",
    "from_obj",
    "from_parsed",
    "may_nest_too_deep",
    "parse_object",
    "read_integer",
    "read_subscription_id",
    "read_table",
    "read_timestamp",
]


def decode(value: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> ScoringRecord:
    """Decode a Kafka message value into a validated record.

    Raises :class:`RecordError` whose ``code`` is ``empty_message``, ``too_large``, ``malformed_json``,
    ``unsupported_version`` or ``invalid_record``, with the ``path`` of the offending part.
    """
    if not value:
        raise RecordError("empty_message", "", "the message has no value (a tombstone or zero bytes)")
    if len(value) > max_bytes:
        raise RecordError("too_large", "", f"{len(value)} bytes; at most {max_bytes} accepted")
    record = decode_fast(value)
    return record if record is not None else decode_reference(value)


def decode_reference(value: bytes) -> ScoringRecord:
    """The hand-written validator: every record, every error message."""
    return from_parsed(parse_object(value), value)


def parse_object(value: bytes) -> dict[str, Any]:
    """The JSON object a message value holds; ``malformed_json`` when it is not UTF-8 JSON, or not an object."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("malformed_json", "", f"not UTF-8 JSON: {exc}") from None
    if type(obj) is not dict:
        raise RecordError("malformed_json", "", f"the value is JSON {_json_kind(obj)}, not an object")
    return obj


def from_parsed(obj: dict[str, Any], value: bytes) -> ScoringRecord:
    """Validate the object orjson parsed from the message ``value`` (the reference, as :func:`decode_reference`)."""
    return _build(obj, may_nest_too_deep(value))


def may_nest_too_deep(value: bytes, own_brackets: int = 0) -> bool:
    """Whether a value in a row of the JSON text ``value`` could nest deeper than :data:`MAX_VALUE_DEPTH`: it would
    need as many opening brackets of its own, besides the record's ``own_brackets`` (those of its object, blocks,
    names, rows and tags, when the caller knows them). Counting is fast; looking for such a value is slow."""
    return value.count(b"[") + value.count(b"{") - own_brackets > MAX_VALUE_DEPTH


def from_obj(obj: Any) -> ScoringRecord:
    """Validate an already-parsed JSON object (dicts, lists, str, int, float, bool, None) into a record.

    Stricter than :func:`decode` about what JSON cannot hold: NaN and infinities, integers beyond 64 bits,
    non-string keys, lone surrogates and other Python types are refused. The record shares ``obj``'s lists.
    """
    if not isinstance(obj, dict):
        raise RecordError("malformed_json", "", f"the value is {_a_kind(obj)}, not an object")
    check_version(obj)
    _check_json(obj)
    return _build(obj, True)


MISSING: Final[Any] = object()
"""What `obj.get(key, MISSING)` gives for a key the record lacks: :func:`check_name` says "required"."""
_INF: Final = float("inf")
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1  # orjson reads and writes unsigned 64-bit integers too
_TIMESTAMP: Final = re.compile(TIMESTAMP_PATTERN)
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_INVISIBLE: Final = re.compile(f"[{INVISIBLE_CHARACTERS}\U000e0000-\U000e0fff]")
_TOP_KEYS: Final = RECORD_KEYS
_REQUEST_KEYS: Final = frozenset({"fields", "values", "meta"})
TABLE_KEYS: Final = frozenset({"fields", "values"})
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


def check_version(obj: dict[str, Any]) -> None:
    """Raise unless the object's ``schema_version`` is 1 (``unsupported_version`` for another number)."""
    version = obj.get("schema_version", MISSING)
    if version is MISSING:
        _fail("schema_version", "required")
    if version != 1 or isinstance(version, bool):
        if isinstance(version, int | float) and not isinstance(version, bool):
            _fail("schema_version", f"version {version!r} is not supported; this reader knows 1", "unsupported_version")
        _fail("schema_version", f"must be the number 1, not {_a_kind(version)}")


def _build(obj: dict[str, Any], check_depth: bool) -> ScoringRecord:
    """Validate a dict of JSON values against the v1 contract; ``check_depth`` looks for over-nested values."""
    version = obj.get("schema_version", MISSING)
    if version != 1 or type(version) is bool:
        check_version(obj)
    if not _TOP_KEYS.issuperset(obj):
        unknown = sorted(key for key in obj if key not in _TOP_KEYS)
        if unknown[0] in FEEDBACK_KEYS:
            _fail(unknown[0], f'not a field of a scoring record; a feedback record says "kind": "{FEEDBACK_KIND}"')
        _fail(_key_path("", unknown[0]), "unknown field (a typo? v1 allows: " + ", ".join(sorted(_TOP_KEYS)) + ")")
    get = obj.get

    scoring_id = get("scoring_id", MISSING)
    if type(scoring_id) is not str or not 0 < len(scoring_id) <= MAX_SCORING_ID_CHARS:
        check_name(scoring_id, "scoring_id", MAX_SCORING_ID_CHARS)
    subscription_id = read_subscription_id(get("subscription_id", MISSING))
    timestamp = read_timestamp(get("scoring_timestamp", MISSING), "scoring_timestamp")

    request_obj = get("request", MISSING)
    if request_obj is MISSING:
        _fail("request", "required")
    request = read_table(request_obj, "request", _REQUEST_KEYS, check_depth)
    rows = len(request.values)
    field_count = len(request.fields)
    meta = None
    meta_obj = request_obj.get("meta")
    if meta_obj is not None:
        meta = read_table(meta_obj, "request.meta", TABLE_KEYS, check_depth)
        _same_rows(meta, rows, "request.meta.values")
        field_count += len(meta.fields)

    status_code = get("status_code")
    if status_code is not None:
        status_code = read_integer(status_code, "status_code", 100, 599)
    error = get("error")
    if error is not None and (type(error) is not str or not error):
        check_name(error, "error", None)
    response = None
    response_obj = get("response")
    if response_obj is not None:
        response = read_table(response_obj, "response", TABLE_KEYS, check_depth)
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
        check_name(deployment_id, "deployment_id", MAX_NAME_CHARS)
    asset_revision = get("asset_revision")
    user_id = get("user_id")
    request_id = get("request_id")
    trace_id = get("trace_id")
    if not (asset_revision is user_id is request_id is trace_id is None):
        for key in ID_FIELDS:
            name = get(key)
            if name is not None and (type(name) is not str or not 0 < len(name) <= MAX_NAME_CHARS or "\x00" in name):
                check_name(name, key, MAX_NAME_CHARS)

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
    first_row = get("first_row")
    first_row = 0 if first_row is None else read_integer(first_row, "first_row", 0, MAX_CALL_ROWS - 1)

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
        user_id,
        request_id,
        trace_id,
        sampling_rate,
        tags,
        first_row,
        1,
    )


def check_name(value: Any, path: str, max_chars: int | None) -> None:
    """Raise unless ``value`` is a non-empty string of at most ``max_chars`` characters (slow path)."""
    if value is MISSING:
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


def read_subscription_id(value: Any) -> str:
    """A record's ``subscription_id``: a name, in NFKC form, holding no invisible character."""
    if type(value) is not str or not 0 < len(value) <= MAX_NAME_CHARS:
        check_name(value, "subscription_id", MAX_NAME_CHARS)
    text: str = value
    return text if text.isascii() and text.isprintable() else _subscription_id(text)


def read_timestamp(value: Any, path: str) -> datetime:
    """An RFC 3339 date-time with an offset (:data:`TIMESTAMP_PATTERN`), as an aware datetime."""
    if type(value) is str and _TIMESTAMP.match(value) is not None:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    if not isinstance(value, str):
        check_name(value, path, None)
    if _TIMESTAMP.match(value) is None:
        _fail(path, f"{_show(value)} is not an RFC 3339 date-time with an offset")
    try:
        return datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError as exc:  # not expected once the pattern matched: still say so as a record error
        _fail(path, f"{_show(value)}: {exc}")


def read_table(value: Any, path: str, keys: frozenset[str] = TABLE_KEYS, check_depth: bool = True) -> Table:
    """A ``{"fields", "values"}`` block at ``path``: names checked (and remembered), rows as wide as the names, at
    most :data:`MAX_ROWS`; ``check_depth`` looks for over-nested values."""
    if type(value) is not dict and not isinstance(value, dict):
        _fail(path, f'must be an object {{"fields": [...], "values": [[...], ...]}}, not {_a_kind(value)}')
    if not keys.issuperset(value):
        unknown = sorted(key for key in value if key not in keys)[0]
        _fail(_key_path(path, unknown), "unknown field; allowed: " + ", ".join(sorted(keys)))
    fields = value.get("fields", MISSING)
    block = _BLOCK_OF.get(path, 0)
    if type(fields) is not list or KNOWN_NAMES.known(fields, block) is None:
        _check_fields(fields, f"{path}.fields")
        KNOWN_NAMES.add(fields, block)
    width = len(fields)
    rows = value.get("values", MISSING)
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


_BLOCK_OF: Final = {"request": 0, "request.meta": 1, "response": 2}


def _check_fields(fields: Any, path: str) -> None:
    if fields is MISSING:
        _fail(path, "required")
    if not isinstance(fields, list):
        _fail(path, f"must be an array of field names, not {_a_kind(fields)}")
    if not 0 < len(fields) <= MAX_FIELDS:
        _fail(path, f"{len(fields)} field names; 1 to {MAX_FIELDS} allowed")
    seen: dict[str, int] = {}
    for index, name in enumerate(fields):
        check_name(name, f"{path}[{index}]", MAX_NAME_CHARS)
        if name in seen:
            _fail(f"{path}[{index}]", f"duplicate field name {_show(name)} (also at [{seen[name]}])")
        seen[name] = index


def _check_rows(rows: Any, path: str) -> None:
    if rows is MISSING:
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


def read_integer(value: Any, path: str, low: int, high: int) -> int:
    """An integer within ``low..high`` (``404.0`` counts, as in JSON Schema; ``true`` does not)."""
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
