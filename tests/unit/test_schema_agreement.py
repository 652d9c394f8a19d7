"""The JSON Schema file and the Python validator must agree on every record.

The schema cannot express a few cross-field rules (listed in its description); where the schema accepts a record,
the validator must accept it exactly when :func:`cross_field_ok` (an independent restatement of those rules) holds.
Where the schema refuses a record, the validator must refuse it too.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from jsonschema import Draft202012Validator

from stream_logger.contract import (
    MAX_FIELDS,
    MAX_NAME_CHARS,
    MAX_ROWS,
    MAX_SCORING_ID_CHARS,
    MAX_TAGS,
    MAX_VALUE_DEPTH,
    SUBSCRIPTION_ID_PATTERN,
    TIMESTAMP_PATTERN,
)
from stream_logger.errors import RecordError
from stream_logger.records import decode, from_obj
from stream_logger.samples import german_credit_record
from tests.unit.test_records import BAD

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "scoring_record.v1.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)


def python_accepts(doc: Any) -> bool:
    """Whether the validator accepts ``doc``, both as bytes (decode) and as an object (from_obj): they must agree."""
    verdicts = []
    for from_bytes in (True, False):
        try:
            decode(orjson.dumps(doc)) if from_bytes else from_obj(doc)
        except RecordError:
            verdicts.append(False)
        else:
            verdicts.append(True)
    assert verdicts[0] == verdicts[1], f"decode and from_obj disagree on {doc!r}"
    return verdicts[0]


def event(text: str) -> None:
    """Count ``text`` in hypothesis's statistics (``pytest --hypothesis-show-statistics``), inside a given test."""
    if currently_in_test_context():
        _event(text)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def cross_field_ok(doc: dict[str, Any]) -> bool:
    """The rules the schema's description lists and cannot express, for a record the schema accepts."""
    request = doc["request"]
    blocks = [block for block in (request, request.get("meta"), doc.get("response")) if block is not None]
    rows = len(request["values"])
    return (
        all(len(row) == len(block["fields"]) for block in blocks for row in block["values"])
        and all(len(block["values"]) == rows for block in blocks)
        and sum(len(block["fields"]) for block in blocks) <= MAX_FIELDS
        and all(_depth(value) <= MAX_VALUE_DEPTH for block in blocks for row in block["values"] for value in row)
        and not any(0xE0000 <= ord(ch) <= 0xE0FFF for ch in doc["subscription_id"])
        and len(unicodedata.normalize("NFKC", doc["subscription_id"])) <= MAX_NAME_CHARS
    )


def check_agreement(doc: Any) -> tuple[bool, bool]:
    """Assert that schema and validator agree on ``doc``; return (schema verdict, validator verdict)."""
    schema_ok = VALIDATOR.is_valid(doc)
    python_ok = python_accepts(doc)
    if not schema_ok:
        assert not python_ok, f"only the schema refuses {doc!r}: {next(VALIDATOR.iter_errors(doc)).message}"
    else:
        expected = cross_field_ok(doc)
        assert python_ok == expected, f"validator says {python_ok}, cross-field rules say {expected}: {doc!r}"
        if not expected:
            event("refused by a cross-field rule only")
    event(f"schema {'accepts' if schema_ok else 'refuses'}")
    return schema_ok, python_ok


# ------------------------------------------------------------------------------------- the schema file itself


def test_the_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_limits_are_the_validators() -> None:
    defs = SCHEMA["$defs"]
    properties = SCHEMA["properties"]
    assert defs["name"]["maxLength"] == MAX_NAME_CHARS
    assert defs["fields"]["maxItems"] == MAX_FIELDS
    assert defs["values"]["maxItems"] == MAX_ROWS
    assert properties["scoring_id"]["maxLength"] == MAX_SCORING_ID_CHARS
    assert properties["scoring_timestamp"]["pattern"] == TIMESTAMP_PATTERN
    assert properties["subscription_id"]["pattern"] == SUBSCRIPTION_ID_PATTERN
    assert properties["tags"]["maxProperties"] == MAX_TAGS
    assert f"at most {MAX_FIELDS} fields" in SCHEMA["description"]
    assert f"at most {MAX_VALUE_DEPTH} levels" in SCHEMA["description"]


# --------------------------------------------------------------------------------------- the hand-written corpus

GOOD_DOCS: list[dict[str, Any]] = [
    german_credit_record(1),
    german_credit_record(2, rows=4, with_meta=True),
    {**german_credit_record(3), "response": None, "status_code": 404.0},
    {**german_credit_record(4), "response": None, "error": "timeout", "tags": None, "user_id": None},
    {**german_credit_record(5), "scoring_timestamp": "2024-02-29t23:59:59.5z", "sampling_rate": 1e-9},
    {**german_credit_record(6), "scoring_id": "x" * MAX_SCORING_ID_CHARS, "subscription_id": "s" * MAX_NAME_CHARS},
    {**german_credit_record(7), "response_time_ms": 0, "schema_version": 1.0, "sampling_rate": 1},
]

# The BAD records of test_records that only a cross-field rule refuses: the schema must accept them.
CROSS_FIELD_ONLY = {
    "short row",
    "tag character",
    "long once normal",
    "long row",
    "meta rows",
    "response rows",
    "response row",
    "too many fields",
    "too deep",
}


@pytest.mark.parametrize("doc", GOOD_DOCS)
def test_good_records_pass_both(doc: dict[str, Any]) -> None:
    assert check_agreement(doc) == (True, True)


@pytest.mark.parametrize(("what", "doc"), [(case[0], case[1]) for case in BAD], ids=[case[0] for case in BAD])
def test_bad_records_fail_both_or_break_a_cross_field_rule(what: str, doc: dict[str, Any]) -> None:
    expected_schema = what in CROSS_FIELD_ONLY
    assert check_agreement(doc) == (expected_schema, False)


# ------------------------------------------------------------------------------------- generated mutations

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
JSON_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=6
)
EDGE_NUMBERS = st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, 1.5, 99, 100, 399, 399.0, 400, 400.0, 599, 600, 1e-300, 2])
EDGE_LENGTHS = st.sampled_from(
    [0, 1, MAX_SCORING_ID_CHARS, MAX_SCORING_ID_CHARS + 1, MAX_NAME_CHARS, MAX_NAME_CHARS + 1]
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Mostly well-formed date-times, with every part sometimes just out of range."""
    year = draw(st.sampled_from([0, 1, 1900, 2000, 2023, 2024, 2100, 9999, 10000]))
    month, day = draw(st.integers(1, 12) | st.integers(0, 13)), draw(st.integers(1, 28) | st.integers(28, 32))
    hour = draw(st.integers(0, 23) | st.just(24))
    minute, second = draw(st.integers(0, 59) | st.just(60)), draw(st.integers(0, 59) | st.just(60) | st.just(61))
    fraction = draw(st.sampled_from(["", ".5", ".123456", ".1234567890", "."]))
    separator = draw(st.sampled_from(["T", "t", " ", "_"]))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "-05:30", "+23:59", "+24:00", "+05:60", "+0530", "", "+05"]))
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node below ``value``."""
    found = []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated_records(draw: st.DrawFn) -> Any:
    """A valid German-credit record with one to three mutations."""
    doc = copy.deepcopy(
        draw(
            st.sampled_from([german_credit_record(11), german_credit_record(12, rows=3, with_meta=True), GOOD_DOCS[3]])
        )
    )
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        kind = draw(st.sampled_from(["drop", "replace", "add", "number", "timestamp", "length", "rows"]))
        if kind == "drop" and paths:
            path = draw(st.sampled_from(paths))
            parent = _parent(doc, path)
            del parent[path[-1]]
        elif kind == "replace" and paths:
            path = draw(st.sampled_from(paths))
            _parent(doc, path)[path[-1]] = draw(JSON_VALUES)
        elif kind == "add":
            dicts = [()] + [path for path in paths if isinstance(_parent(doc, (*path, None)), dict)]
            target = _parent(doc, (*draw(st.sampled_from(dicts)), None))
            target[draw(st.sampled_from(["extra", "scoring_timestmap", "meta", "status_code", "error", "tags"]))] = (
                draw(JSON_VALUES)
            )
        elif kind == "number":
            key = draw(st.sampled_from(["response_time_ms", "status_code", "sampling_rate", "schema_version"]))
            doc[key] = draw(EDGE_NUMBERS | st.floats(allow_nan=False, allow_infinity=False) | st.booleans())
        elif kind == "timestamp":
            doc["scoring_timestamp"] = draw(timestamps() | _TEXT)
        elif kind == "length":
            key = draw(st.sampled_from(["scoring_id", "subscription_id", "deployment_id", "user_id", "error"]))
            doc[key] = "x" * draw(EDGE_LENGTHS)
        elif kind == "rows" and isinstance(doc.get("request"), dict):
            rows = doc["request"].get("values")
            if isinstance(rows, list) and rows and isinstance(rows[0], list):
                change = draw(st.sampled_from(["drop value", "add value", "add row", "drop row"]))
                if change == "drop value" and rows[0]:
                    rows[0].pop()
                elif change == "add value":
                    rows[0].append(draw(JSON_VALUES))
                elif change == "add row":
                    rows.append(list(rows[0]))
                elif len(rows) > 1:
                    rows.pop()
    if draw(st.booleans()) and isinstance(doc, dict) and isinstance(doc.get("request"), dict):
        fields = doc["request"].get("fields")
        if isinstance(fields, list) and len(fields) > 1:
            fields[1] = draw(st.sampled_from(["", fields[0], "x" * (MAX_NAME_CHARS + 1), "ok"]))
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_records())
def test_schema_and_validator_agree_on_mutated_records(doc: Any) -> None:
    check_agreement(doc)


@settings(max_examples=400, deadline=None)
@given(timestamps() | _TEXT)
def test_schema_and_validator_agree_on_timestamps(value: str) -> None:
    check_agreement({**german_credit_record(1), "scoring_timestamp": value})


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_anything_that_is_not_an_object_is_refused_by_both(value: Any) -> None:
    if not isinstance(value, dict):
        assert check_agreement(value) == (False, False)
