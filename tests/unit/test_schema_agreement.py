"""The JSON Schema file and the Python validator must agree on every record.

The schema cannot express a few cross-field rules (listed in its description); where the schema accepts a record,
the validator must accept it exactly when :func:`cross_field_ok` (an independent restatement of those rules) holds.
Where the schema refuses a record, the validator must refuse it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as _event
from hypothesis.control import currently_in_test_context
from jsonschema import Draft202012Validator

from stream_logger.contract import (
    MAX_CALL_ROWS,
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
from tests.support import (
    BAD,
    GOOD_DOCS,
    JSON_VALUES,
    SHORT_TEXT,
    depth_of,
    mutated_records,
    subscription_id_fits,
    timestamps,
)

__all__ = ["GOOD_DOCS", "mutated_records"]  # tests/unit/test_log_check.py imports them from here

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


def cross_field_ok(doc: dict[str, Any]) -> bool:
    """The rules the schema's description lists and cannot express, for a record the schema accepts."""
    request = doc["request"]
    blocks = [block for block in (request, request.get("meta"), doc.get("response")) if block is not None]
    rows = len(request["values"])
    return (
        all(len(row) == len(block["fields"]) for block in blocks for row in block["values"])
        and all(len(block["values"]) == rows for block in blocks)
        and sum(len(block["fields"]) for block in blocks) <= MAX_FIELDS
        and all(depth_of(value) <= MAX_VALUE_DEPTH for block in blocks for row in block["values"] for value in row)
        and subscription_id_fits(doc["subscription_id"])
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
    assert properties["first_row"]["maximum"] == MAX_CALL_ROWS - 1
    assert f"at most {MAX_FIELDS} fields" in SCHEMA["description"]
    assert f"at most {MAX_VALUE_DEPTH} levels" in SCHEMA["description"]


# --------------------------------------------------------------------------------------- the hand-written corpus

# The BAD records (tests/support.py) that only a cross-field rule refuses: the schema must accept them.
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


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_records())
def test_schema_and_validator_agree_on_mutated_records(doc: Any) -> None:
    check_agreement(doc)


@settings(max_examples=400, deadline=None)
@given(timestamps() | SHORT_TEXT)
def test_schema_and_validator_agree_on_timestamps(value: str) -> None:
    check_agreement({**german_credit_record(1), "scoring_timestamp": value})


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_anything_that_is_not_an_object_is_refused_by_both(value: Any) -> None:
    if not isinstance(value, dict):
        assert check_agreement(value) == (False, False)
