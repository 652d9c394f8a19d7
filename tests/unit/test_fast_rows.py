"""The compiled path must agree with the reference path: the same record, the same rows, or a decline.

``records.decode`` first tries msgspec (``_decode_compiled``) and the sink maps known layouts straight from bytes
(``fast_rows.to_rows``). Whenever either accepts a message, the reference (``_decode_reference``, then
``Subscription.rows_for``) must accept it too and give exactly the same result; whenever the reference refuses
one, the compiled path must decline it. Both must also cover the common records, or the path is dead code.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_logger import envelope, fast_rows, records
from stream_logger.contract import Layout
from stream_logger.errors import RecordError
from stream_logger.rows import infer_type, rows_for
from stream_logger.samples import german_credit_record
from stream_logger.subscription import Field, Source, Subscription
from tests.unit.test_csvcopy import assert_line_means
from tests.unit.test_records import BAD
from tests.unit.test_schema_agreement import GOOD_DOCS, JSON_VALUES, mutated_records

NOW = datetime(2026, 1, 2, tzinfo=UTC)
SOURCE = Source("topic", 1, 7)


def _subscription(sample: dict[str, Any]) -> Subscription:
    """The subscription auto-registration would declare for ``sample``'s fields (request, meta, response)."""
    fields: list[Field] = []
    request = sample["request"]
    for role, block in (("feature", request), ("meta", request.get("meta")), ("response", sample.get("response"))):
        if block is None:
            continue
        for i, name in enumerate(block["fields"]):
            type_ = infer_type([row[i] for row in block["values"]]) or "text"
            fields.append(Field(name, f"c{len(fields)}", role, type_))
    return Subscription(sample["subscription_id"], "dm", "payload_x", tuple(fields))


SUBSCRIPTIONS = {"german-credit": _subscription(german_credit_record(1))}
META_SUB = _subscription(german_credit_record(1, rows=2, with_meta=True))
# Records that leave a mapper with a recent decoder for each subscription's common layouts (one row, then two).
_WARM_UP = {
    ("german-credit", False): [german_credit_record(1), german_credit_record(2, rows=2)],
    ("german-credit", True): [german_credit_record(1, with_meta=True)],
}


def _reference_rows(sub: Subscription, value: bytes) -> list[tuple[Any, ...]] | RecordError:
    try:
        record = records.decode(value)
        return rows_for(sub, record, SOURCE, NOW)
    except RecordError as exc:
        return exc


def _compiled_rows(sub: Subscription, value: bytes, *, csv: bool = False) -> fast_rows.Mapped | None:
    """What the compiled path maps ``value`` to, the same whether its layout is looked up (a fresh mapper) or a
    decoder that took an earlier message takes it (a mapper warmed with the common record of the subscription)."""

    def known(subscription_id: str, layout: Layout) -> Subscription | None:
        return sub if subscription_id == sub.subscription_id else None

    def mapped(mapper: fast_rows.Mapper) -> fast_rows.Mapped | None:
        return mapper.to_rows(value, SOURCE.topic, SOURCE.partition, SOURCE.offset, NOW)

    fresh = mapped(fast_rows.Mapper(known, csv=csv))
    warm = fast_rows.Mapper(known, csv=csv)
    for doc in _WARM_UP[sub.subscription_id, sub is META_SUB]:
        assert warm.to_rows(_json(doc), "t", 0, 0, NOW) is not None
    warmed = mapped(warm)
    assert (fresh is None) == (warmed is None), f"a recent decoder and a look-up disagree on {value!r}"
    if fresh is not None and warmed is not None:
        assert (fresh.rows, fresh.day, fresh.sub) == (warmed.rows, warmed.day, warmed.sub)
    return warmed


def _json(doc: Any) -> bytes:
    """``doc`` as a message value; bytes are one already (the fuzz tests' hostile messages)."""
    if isinstance(doc, bytes):
        return doc
    try:
        return orjson.dumps(doc)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        return json.dumps(doc, allow_nan=False).encode()


def assert_records_agree(doc: Any) -> bool:
    """The compiled decode is None or the reference's record; True when the compiled path took it."""
    value = _json(doc)
    fast = envelope.decode_fast(value)
    try:
        reference = records._decode_reference(value)
    except RecordError as exc:
        assert fast is None, f"the compiled path accepts what the reference refuses ({exc}): {doc!r}"
        return False
    assert fast is None or fast == reference, f"the paths build different records from {doc!r}"
    return fast is not None


def assert_rows_agree(sub: Subscription, doc: Any) -> bool:
    """The compiled rows are None or the reference's rows; True when the compiled path took it."""
    value = _json(doc)
    mapped = _compiled_rows(sub, value)
    reference = _reference_rows(sub, value)
    if isinstance(reference, RecordError):
        assert mapped is None, f"the compiled path maps what the reference refuses ({reference}): {doc!r}"
        return False
    if mapped is None:
        return False
    assert mapped.rows == reference, f"the paths build different rows from {doc!r}"
    assert [type(v) for v in mapped.rows[0]] == [type(v) for v in reference[0]]
    assert mapped.sub is sub and not mapped.csv
    assert mapped.day == records.decode(value).scoring_timestamp.astimezone(UTC).date()
    # The same, written as CSV lines for COPY where the message allows it.
    as_csv = _compiled_rows(sub, value, csv=True)
    assert as_csv is not None and (as_csv.sub, as_csv.day) == (mapped.sub, mapped.day)
    if b"\\" in value:
        assert not as_csv.csv and as_csv.rows == reference
    else:
        assert as_csv.csv and len(as_csv.rows) == len(reference)
        for line, row in zip(as_csv.rows, reference, strict=True):
            assert_line_means(line, row)
    return True


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
