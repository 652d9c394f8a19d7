"""The compiled path must agree with the reference path: the same record, the same rows, or a decline.

``records.decode`` first tries msgspec (``envelope.decode_fast``) and the sink maps known layouts straight from bytes
(``fast_rows.to_rows``). Whenever either accepts a message, the reference (``records.decode_reference``, then
``Subscription.rows_for``) must accept it too and give exactly the same result; whenever the reference refuses
one, the compiled path must decline it. Both must also cover the common records, or the path is dead code.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_logger.samples import german_credit_record
from tests.support import (
    BAD,
    GOOD_DOCS,
    JSON_VALUES,
    META_SUB,
    SUBSCRIPTIONS,
    assert_records_agree,
    assert_rows_agree,
    mutated_records,
)

# ----------------------------------------------------------------------------------------- the common records


@pytest.mark.parametrize("rows", [1, 3])
def test_the_compiled_path_takes_the_common_records(rows: int) -> None:
    doc = german_credit_record(5, rows=rows)
    assert assert_records_agree(doc)
    assert assert_rows_agree(SUBSCRIPTIONS["german-credit"], doc)
    assert assert_rows_agree(META_SUB, german_credit_record(6, rows=rows, with_meta=True))


def test_records_agree_on_the_hand_written_corpus() -> None:
    taken = [assert_records_agree(doc) for doc in GOOD_DOCS]
    assert taken.count(True) >= 4  # the lower-case 't'/'z' and 404.0 cases may go the reference way
    for _, doc, _, _ in BAD:
        assert not assert_records_agree(doc)


# ------------------------------------------------------------------------------- edges the two parsers differ on

EDGE_VALUES = [
    2**63 - 1,
    2**63,  # an unsigned 64-bit integer: int for orjson, out of msgspec's bounds
    2**64,  # beyond 64 bits: orjson reads a float
    -(2**63) - 1,
    1e308,
    -0.0,
    5e-324,
    "",
    "\x00",
    "é" * 3,
    "😀",
    True,
    None,
    [],
    [1, 2.5, None],
    [[1]],
    {"a": [1]},
    {"a": 1},
    [True],
    [2**64],
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
@pytest.mark.parametrize("column", [1, 4, 8, 21])  # LoanDuration (bigint), LoanAmount, Sex (text), probability
def test_rows_agree_on_edge_values(value: Any, column: int) -> None:
    doc = german_credit_record(3)
    if column < 20:
        doc["request"]["values"][0][column] = value
    else:
        doc["response"]["values"][0][1] = value
    assert_records_agree(doc)
    assert_rows_agree(SUBSCRIPTIONS["german-credit"], doc)


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": 1.0},
        {"status_code": 404.0, "response": None},
        {"scoring_timestamp": "2025-01-01t00:00:00z"},
        {"scoring_timestamp": "2025-02-29T00:00:00Z"},
        {"scoring_timestamp": "2025-01-01T00:00:00.1234567+05:30"},
        {"scoring_id": "a\x00b"},
        {"deployment_id": "d\x00"},
        {"error": "x\x00"},
        {"tags": {"k": "v\x00"}},
        {"tags": {}},
        {"sampling_rate": 1},
        {"response_time_ms": 0},
        {"response_time_ms": 2**64},
        {"user_id": "u", "request_id": "r", "trace_id": "t", "error": "e"},
    ],
    ids=repr,
)
def test_rows_agree_on_edge_records(change: dict[str, Any]) -> None:
    doc = {**german_credit_record(4), **change}
    assert_records_agree(doc)
    assert_rows_agree(SUBSCRIPTIONS["german-credit"], doc)


def test_a_reordered_or_partial_layout_maps_by_name() -> None:
    doc = german_credit_record(8, rows=2)
    order = list(reversed(range(20)))[:-3]  # reversed, and three declared features missing
    doc["request"]["fields"] = [doc["request"]["fields"][i] for i in order]
    doc["request"]["values"] = [[row[i] for i in order] for row in doc["request"]["values"]]
    assert assert_rows_agree(SUBSCRIPTIONS["german-credit"], doc)


def test_a_layout_with_undeclared_fields_is_declined_for_the_reference_path() -> None:
    doc = german_credit_record(9)
    doc["request"]["fields"].append("NewField")
    doc["request"]["values"][0].append(1)
    assert not assert_rows_agree(SUBSCRIPTIONS["german-credit"], doc)


# ---------------------------------------------------------------------------------------------- generated records


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_records())
def test_records_agree_on_mutated_records(doc: Any) -> None:
    assert_records_agree(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_records(), st.data())
def test_rows_agree_on_mutated_records(doc: Any, data: st.DataObject) -> None:
    if isinstance(doc, dict) and isinstance(doc.get("request"), dict):
        rows = doc["request"].get("values")
        if isinstance(rows, list) and rows and isinstance(rows[0], list) and rows[0] and data.draw(st.booleans()):
            rows[0][data.draw(st.integers(0, len(rows[0]) - 1))] = data.draw(JSON_VALUES)
    for sub in (SUBSCRIPTIONS["german-credit"], META_SUB):
        assert_rows_agree(sub, copy.deepcopy(doc))
