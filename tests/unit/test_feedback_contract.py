"""The feedback record v1: the JSON Schema file and the reference validator agree; what log_feedback() sends.

Where the schema accepts a record the validator must accept it exactly when the cross-field rules of the schema's
description hold (:func:`cross_field_ok`, restated here); where the schema refuses one, so does the validator.
"""

from __future__ import annotations

import copy
import json
import logging
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from stream_logger import ThreadedEmitter
from stream_logger.contract import (
    FEEDBACK_KEYS,
    MAX_NAME_CHARS,
    MAX_SCORING_ID_CHARS,
    MAX_VALUE_DEPTH,
    FeedbackRecord,
    ScoringRecord,
)
from stream_logger.errors import RecordError
from stream_logger.feedback import decode_message, feedback_object, message_of, read_feedback
from stream_logger.feedback_call import build_feedback, encode_feedback_call
from stream_logger.samples import german_credit_record
from tests.support import JSON_VALUES, SHORT_TEXT, nested, parent_of, paths_in, timestamps

ROOT = Path(__file__).resolve().parents[2]
SCHEMA: dict[str, Any] = json.loads((ROOT / "schemas" / "feedback_record.v1.json").read_text(encoding="utf-8"))
SCORING_SCHEMA: dict[str, Any] = json.loads((ROOT / "schemas" / "scoring_record.v1.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)

_BASE = {"schema_version": 1, "kind": "feedback", "feedback_id": "f-1", "subscription_id": "german-credit"}
_AT = "2025-06-01T12:00:00Z"
GOOD: list[dict[str, Any]] = [
    {**_BASE, "labelled_at": _AT, "scoring_id": "s-1", "label": "Risk"},
    {**_BASE, "labelled_at": "2025-06-01T14:00:00+02:00", "scoring_id": "s-1", "row_index": 2, "label": 0.5},
    {**_BASE, "labelled_at": _AT, "scoring_id": "s-1", "label": True, "user_id": "reviewer-7"},
    {**_BASE, "labelled_at": _AT, "data": {"fields": ["Age", "Risk"], "values": [[33, "Risk"], [41, "No Risk"]]}},
    {
        **_BASE,
        "labelled_at": _AT,
        "data": {"fields": ["Age", "y", "prediction"], "values": [[33, 1, 0]]},
        "label_field": "y",
        "scoring_id": None,
        "label": None,
    },
]
BAD = {  # name -> (record, path of the error); the ones marked cross-field pass the schema
    "no kind": ({k: v for k, v in GOOD[0].items() if k != "kind"}, "feedback_id"),  # read as a scoring record
    "other kind": ({**GOOD[0], "kind": "label"}, "kind"),
    "unknown key": ({**GOOD[0], "lable": "Risk"}, "lable"),
    "no id": ({k: v for k, v in GOOD[0].items() if k != "feedback_id"}, "feedback_id"),
    "long id": ({**GOOD[0], "feedback_id": "x" * (MAX_SCORING_ID_CHARS + 1)}, "feedback_id"),
    "no time": ({k: v for k, v in GOOD[0].items() if k != "labelled_at"}, "labelled_at"),
    "naive time": ({**GOOD[0], "labelled_at": "2025-06-01T12:00:00"}, "labelled_at"),
    "neither form": ({**_BASE, "labelled_at": _AT}, ""),
    "both forms": ({**GOOD[0], "data": GOOD[3]["data"]}, ""),
    "no label": ({k: v for k, v in GOOD[0].items() if k != "label"}, "label"),
    "null label": ({**GOOD[0], "label": None}, "label"),
    "list label": ({**GOOD[0], "label": ["Risk"]}, "label"),
    "negative row": ({**GOOD[0], "row_index": -1}, "row_index"),
    "label_field by reference": ({**GOOD[0], "label_field": "Risk"}, "label_field"),
    "label beside data": ({**GOOD[3], "label": "Risk"}, "label"),
    "row_index beside data": ({**GOOD[3], "row_index": 0}, "row_index"),
    "no rows": ({**GOOD[3], "data": {"fields": ["Age"], "values": []}}, "data.values"),
    "version 2": ({**GOOD[0], "schema_version": 2}, "schema_version"),
    "invisible subscription": ({**GOOD[0], "subscription_id": "german\u200bcredit"}, "subscription_id"),
    # cross-field rules only
    "short row": ({**GOOD[3], "data": {"fields": ["Age", "Risk"], "values": [[33]]}}, "data.values[0]"),
    "label_field not a field": ({**GOOD[3], "label_field": "Sex"}, "label_field"),
    "too deep": (
        {**GOOD[3], "data": {"fields": ["x"], "values": [[nested(MAX_VALUE_DEPTH + 1)]]}},
        "data.values[0][0]",
    ),
}
CROSS_FIELD_ONLY = {"short row", "label_field not a field", "too deep"}


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def cross_field_ok(doc: dict[str, Any]) -> bool:
    data = doc.get("data")
    if data is not None:
        if any(len(row) != len(data["fields"]) for row in data["values"]):
            return False
        if doc.get("label_field") is not None and doc["label_field"] not in data["fields"]:
            return False
        if any(_depth(v) > MAX_VALUE_DEPTH for row in data["values"] for v in row):
            return False
    sub = doc["subscription_id"]
    return not any(0xE0000 <= ord(ch) <= 0xE0FFF for ch in sub) and len(unicodedata.normalize("NFKC", sub)) <= 256


def python_accepts(doc: Any) -> bool:
    try:
        decoded = decode_message(orjson.dumps(doc))
    except RecordError:
        return False
    assert isinstance(decoded, FeedbackRecord), f"decoded as a scoring record: {doc!r}"
    return True


def test_the_schema_is_valid_and_shares_the_scoring_records_definitions() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    for name in ("name", "fields", "values", "table"):
        assert SCHEMA["$defs"][name] == SCORING_SCHEMA["$defs"][name], name
    for key in ("subscription_id",):
        assert SCHEMA["properties"][key] == SCORING_SCHEMA["properties"][key]
    assert (
        SCHEMA["properties"]["labelled_at"]["pattern"] == SCORING_SCHEMA["properties"]["scoring_timestamp"]["pattern"]
    )
    assert set(SCHEMA["properties"]) == FEEDBACK_KEYS


@pytest.mark.parametrize("doc", GOOD)
def test_good_feedback_is_accepted_by_both(doc: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(doc), next(VALIDATOR.iter_errors(doc)).message
    assert python_accepts(doc)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_feedback_is_refused_with_its_path(name: str) -> None:
    doc, path = BAD[name]
    assert VALIDATOR.is_valid(doc) == (name in CROSS_FIELD_ONLY)
    with pytest.raises(RecordError) as caught:
        decode_message(orjson.dumps(doc))
    assert caught.value.path == path, caught.value
    assert caught.value.code in ("invalid_record", "unsupported_version")


def test_a_scoring_record_still_decodes_as_one() -> None:
    assert isinstance(decode_message(orjson.dumps(german_credit_record(3))), ScoringRecord)
    with pytest.raises(RecordError) as caught:  # "kind" on a scoring record: said at once, not "request: unknown"
        decode_message(orjson.dumps({**german_credit_record(3), "kind": "scoring"}))
    assert caught.value.path == "kind"


@st.composite
def mutated_feedback(draw: st.DrawFn) -> Any:
    doc: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(GOOD)))
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_in(doc)
        kind = draw(st.sampled_from(["drop", "replace", "add", "timestamp", "length", "row"]))
        if kind == "drop" and paths:
            path = draw(st.sampled_from(paths))
            del parent_of(doc, path)[path[-1]]
        elif kind == "replace" and paths:
            path = draw(st.sampled_from(paths))
            parent_of(doc, path)[path[-1]] = draw(JSON_VALUES)
        elif kind == "add":
            key = draw(st.sampled_from(["scoring_id", "label", "data", "row_index", "label_field", "extra", "kind"]))
            doc[key] = copy.deepcopy(draw(JSON_VALUES | st.just(GOOD[3]["data"]) | st.just("Risk")))
        elif kind == "timestamp":
            doc["labelled_at"] = draw(timestamps() | SHORT_TEXT)
        elif kind == "length":
            key = draw(st.sampled_from(["feedback_id", "subscription_id", "scoring_id", "user_id", "label_field"]))
            doc[key] = "x" * draw(st.sampled_from([0, 1, MAX_SCORING_ID_CHARS, MAX_SCORING_ID_CHARS + 1, 256, 257]))
        elif kind == "row" and isinstance(doc.get("data"), dict) and isinstance(doc["data"].get("values"), list):
            rows = doc["data"]["values"]
            if rows and isinstance(rows[0], list):
                rows[0].append(draw(JSON_VALUES)) if draw(st.booleans()) else rows[0].clear()
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_feedback())
def test_schema_and_validator_agree_on_mutated_feedback(doc: Any) -> None:
    schema_ok = VALIDATOR.is_valid(doc)
    python_ok = python_accepts(doc) if isinstance(doc, dict) and doc.get("kind") is not None else None
    if python_ok is None:
        return  # without a kind it is read as a scoring record: test_schema_agreement's business
    if not schema_ok:
        assert not python_ok, f"only the schema refuses {doc!r}: {next(VALIDATOR.iter_errors(doc)).message}"
    else:
        assert python_ok == cross_field_ok(doc), doc


# ----------------------------------------------------------------------------------- what log_feedback() sends


def test_a_call_is_written_as_the_validator_reads_it() -> None:
    call: dict[str, Any] = {"subscription_id": "gc", "scoring_id": "s-1", "row_index": 1, "label": "Risk"}
    feedback_id, value, naive = encode_feedback_call(call)  # type: ignore[arg-type]
    record = read_feedback(orjson.loads(value))
    assert (record.feedback_id, record.scoring_id, record.row_index, record.label) == (feedback_id, "s-1", 1, "Risk")
    assert len(feedback_id) == 32 and not naive
    assert orjson.loads(value) == orjson.loads(orjson.dumps(feedback_object(record), option=orjson.OPT_UTC_Z))


def test_standalone_data_takes_the_shapes_log_takes() -> None:
    rows = [{"Age": 33, "Risk": "Risk"}, {"Age": 41, "Risk": "No Risk"}]
    record, naive = build_feedback(
        subscription_id="gc", data=rows, label_field="Risk", labelled_at=datetime(2025, 6, 1)
    )
    assert (
        record.data is not None and record.data.fields == ["Age", "Risk"] and record.data.values[1] == [41, "No Risk"]
    )
    assert naive and record.labelled_at == datetime(2025, 6, 1, tzinfo=UTC)  # taken as UTC, and said so


@pytest.mark.parametrize(
    ("call", "path"),
    [
        ({"subscription_id": "gc", "scoring_id": "s-1"}, "label"),
        ({"subscription_id": "gc", "label": "Risk"}, ""),
        ({"subscription_id": "gc", "scoring_id": 7, "label": "Risk"}, "scoring_id"),
        ({"subscription_id": "gc", "scoring_id": "s", "label": "x", "labelled_at": "yesterday"}, "labelled_at"),
        ({"subscription_id": "gc", "data": {"fields": ["a"], "values": [[1]]}, "label_field": "b"}, "label_field"),
        ({"scoring_id": "s", "label": "x"}, "subscription_id"),
    ],
)
def test_an_invalid_label_is_refused_with_strict_and_counted_without(
    call: dict[str, Any], path: str, emitters: tuple[ThreadedEmitter, ThreadedEmitter], caplog: pytest.LogCaptureFixture
) -> None:
    strict, lenient = emitters
    with pytest.raises(RecordError) as caught:
        strict.log_feedback(**call)
    assert caught.value.path == path
    before = lenient.stats().invalid
    with caplog.at_level(logging.WARNING):
        assert lenient.log_feedback(**call) == ""
    assert lenient.stats().invalid == before + 1
    assert "invalid feedback record not sent" in caplog.text


@pytest.fixture(scope="module")
def emitters() -> Iterator[tuple[ThreadedEmitter, ThreadedEmitter]]:
    """A strict and a lenient emitter, no broker behind them (nothing invalid is queued)."""
    strict = ThreadedEmitter("t", "127.0.0.1:1", overflow="drop", strict=True)
    lenient = ThreadedEmitter("t", "127.0.0.1:1", overflow="drop")
    yield strict, lenient
    strict.close()
    lenient.close()


def test_emit_lines_of_either_kind() -> None:
    key, value = message_of(GOOD[0])
    assert key == "f-1" and isinstance(decode_message(value), FeedbackRecord)
    key, value = message_of(german_credit_record(4))
    assert key == german_credit_record(4)["scoring_id"] and isinstance(decode_message(value), ScoringRecord)
    with pytest.raises(RecordError):
        message_of({**GOOD[0], "label": None})


def test_names_hold_their_limits() -> None:
    doc = {**GOOD[0], "user_id": "u" * (MAX_NAME_CHARS + 1)}
    with pytest.raises(RecordError) as caught:
        decode_message(orjson.dumps(doc))
    assert caught.value.path == "user_id"
