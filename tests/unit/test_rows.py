"""rows_for: one row per scored row, typed values, conflicts and unstorable values named with their path."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from stream_logger.contract import Table
from stream_logger.errors import RecordError
from stream_logger.identifiers import SYSTEM_COLUMNS
from stream_logger.rows import infer_type, partition_day, rows_for
from stream_logger.subscription import Field, Source, Subscription
from tests.support import GERMAN_CREDIT_FIELDS, german_credit_record, simple_record

SOURCE = Source("topic", 2, 41)
NOW = datetime(2024, 5, 18, tzinfo=UTC)


def _sub(*fields: tuple[str, str, str], evolve: bool = True) -> Subscription:
    return Subscription(
        "sub",
        "dm",
        "payload_sub",
        tuple(Field(name, name.lower(), role, type_) for name, role, type_ in fields),
        evolve=evolve,
    )


def _as_dict(sub: Subscription, row: tuple[Any, ...]) -> dict[str, Any]:
    assert len(row) == len(sub.columns)
    return dict(zip(sub.columns, row, strict=True))


def test_columns_are_system_columns_then_fields() -> None:
    sub = _sub(("Age", "feature", "bigint"), ("prediction", "prediction", "text"))
    assert sub.columns == (*SYSTEM_COLUMNS, "age", "prediction")


def test_a_multi_row_request_gives_one_row_each_with_its_index_and_source() -> None:
    fields = [(n, "feature", "text") for n in GERMAN_CREDIT_FIELDS]
    sub = _sub(*fields, ("prediction", "prediction", "text"), ("probability", "probability", "float8[]"))
    record = german_credit_record("abc", rows=3)
    rows = [_as_dict(sub, r) for r in rows_for(sub, _record_all_text(record), SOURCE, NOW)]
    assert [r["row_index"] for r in rows] == [0, 1, 2]
    assert {r["scoring_id"] for r in rows} == {"abc"}
    assert rows[1]["prediction"] == "No Risk"
    assert rows[0]["probability"] == [0.3, 0.7]
    assert (rows[2]["src_topic"], rows[2]["src_partition"], rows[2]["src_offset"]) == ("topic", 2, 41)
    assert rows[0]["ingested_at"] == NOW
    assert rows[0]["tags"] == '{"env":"test"}'
    assert rows[0]["extra"] is None  # the response's echoes of request fields are not kept twice


def _record_all_text(record: Any) -> Any:
    for row in record.request.values:
        row[:] = [str(v) for v in row]
    return record


def test_types_are_checked_and_only_converted_when_nothing_is_lost() -> None:
    sub = _sub(("i", "feature", "bigint"), ("f", "feature", "float8"), ("b", "feature", "boolean"))
    ok = simple_record("r", ["i", "f", "b"], [[1, 2, True], [None, 2.5, None]])
    rows = [_as_dict(sub, r) for r in rows_for(sub, ok, SOURCE, NOW)]
    assert (rows[0]["i"], rows[0]["f"], rows[0]["b"]) == (1, 2.0, True)
    assert isinstance(rows[0]["f"], float)  # an int into a float column is fine, sent as float
    assert (rows[1]["i"], rows[1]["f"], rows[1]["b"]) == (None, 2.5, None)
    # a whole float into a bigint column (a numpy float matrix's integer column) is the integer it holds
    whole = rows_for(sub, simple_record("r", ["i", "f", "b"], [[33.0, 1.0, True], [-0.0, 1.0, True]]), SOURCE, NOW)
    assert [(_as_dict(sub, r)["i"], type(_as_dict(sub, r)["i"])) for r in whole] == [(33, int), (0, int)]
    cases: list[tuple[list[list[Any]], str]] = [
        ([[1, 2.0, True], [1.5, 2.0, True]], "request.values[1][i]"),
        ([["1", 2.0, True]], "request.values[0][i]"),
        ([[True, 2.0, True]], "request.values[0][i]"),
        ([[1, "2", True]], "request.values[0][f]"),
        ([[1, 2.0, 1]], "request.values[0][b]"),
        ([[2**63, 2.0, True]], "request.values[0][i]"),
        ([[2.0**63, 2.0, True]], "request.values[0][i]"),
        ([[1e300, 2.0, True]], "request.values[0][i]"),
        ([[-(2**63) - 1, 2.0, True]], "request.values[0][i]"),
    ]
    for values, path in cases:
        with pytest.raises(RecordError) as caught:
            rows_for(sub, simple_record("r", ["i", "f", "b"], values), SOURCE, NOW)
        assert caught.value.code == "type_conflict"
        assert caught.value.path == path


def test_bigint_limits_fit() -> None:
    sub = _sub(("i", "feature", "bigint"))
    rows = rows_for(sub, simple_record("r", ["i"], [[2**63 - 1], [-(2**63)]]), SOURCE, NOW)
    assert [r[-1] for r in rows] == [2**63 - 1, -(2**63)]


def test_nul_characters_are_unstorable_wherever_they_are() -> None:
    sub = _sub(("t", "feature", "text"), ("j", "feature", "jsonb"))
    with pytest.raises(RecordError) as caught:
        rows_for(sub, simple_record("r", ["t", "j"], [["a\x00b", None]]), SOURCE, NOW)
    assert (caught.value.code, caught.value.path) == ("unstorable_value", "request.values[0][t]")
    with pytest.raises(RecordError) as caught:
        rows_for(sub, simple_record("r", ["t", "j"], [["ok", {"k": "a\x00"}]]), SOURCE, NOW)
    assert (caught.value.code, caught.value.path) == ("unstorable_value", "request.values[0][j]")
    with pytest.raises(RecordError) as caught:
        rows_for(sub, simple_record("r", ["t", "new"], [["ok", "\x00"]]), SOURCE, NOW)
    assert caught.value.code == "unstorable_value"
    record = simple_record("r", ["t"], [["ok"]])
    record.error = "boom\x00"
    with pytest.raises(RecordError) as caught:
        rows_for(sub, record, SOURCE, NOW)
    assert (caught.value.code, caught.value.path) == ("unstorable_value", "error")


def test_undeclared_fields_go_to_extra_and_jsonb_gets_json_text() -> None:
    sub = _sub(("a", "feature", "bigint"), ("j", "feature", "jsonb"), ("arr", "feature", "float8[]"))
    record = simple_record(
        "r",
        ["a", "j", "arr", "New"],
        [[1, {"x": [1, 2]}, [1, 2.5, None], "v"]],
        response=Table(["a", "score"], [[1, 0.9]]),
    )
    record.request_meta = Table(["region"], [["eu"]])
    (row,) = [_as_dict(sub, r) for r in rows_for(sub, record, SOURCE, NOW)]
    assert row["j"] == '{"x":[1,2]}'
    assert row["arr"] == [1.0, 2.5, None]
    assert row["extra"] == '{"request":{"New":"v"},"meta":{"region":"eu"},"response":{"score":0.9}}'


def test_missing_fields_and_failed_calls_give_nulls() -> None:
    sub = _sub(("a", "feature", "bigint"), ("prediction", "prediction", "text"))
    record = simple_record("r", ["other"], [[1]])
    record.status_code = 500
    record.error = "model crashed"
    (row,) = [_as_dict(sub, r) for r in rows_for(sub, record, SOURCE, NOW)]
    assert (row["a"], row["prediction"], row["status_code"], row["error"]) == (None, None, 500, "model crashed")


def test_plans_are_cached_per_layout_and_layouts_do_not_mix() -> None:
    sub = _sub(("a", "feature", "bigint"), ("b", "feature", "text"))
    r1 = rows_for(sub, simple_record("r", ["a", "b"], [[1, "x"]]), SOURCE, NOW)
    r2 = rows_for(sub, simple_record("r", ["b", "a"], [["y", 2]]), SOURCE, NOW)
    assert r1[0][-2:] == (1, "x")
    assert r2[0][-2:] == (2, "y")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, None], "bigint"),
        ([1, 2.5], "float8"),
        (["a", None], "text"),
        ([True, False], "boolean"),
        ([[0.1, 0.9], [1, 0]], "float8[]"),
        ([{"a": 1}], "jsonb"),
        (["a", 1], "jsonb"),
        ([True, 1], "jsonb"),
        ([2**70], "jsonb"),
        ([None, None], None),
    ],
)
def test_type_inference(values: list[Any], expected: str | None) -> None:
    assert infer_type(values) == expected


@pytest.mark.parametrize(
    ("timestamp", "day"),
    [
        ("2025-01-01T23:30:00-01:00", date(2025, 1, 2)),
        ("0001-01-01T00:00:01Z", date(1, 1, 1)),
        ("9999-12-31T23:59:59.999998Z", date(9999, 12, 31)),
        ("0001-01-01T00:30:00+01:00", "outside years 0001 to 9999 in UTC"),
        ("9999-12-31T23:30:00-01:00", "outside years 0001 to 9999 in UTC"),
        ("0001-01-01T00:00:00Z", "-infinity or infinity"),
        ("0001-01-01T01:00:00+01:00", "-infinity or infinity"),
        ("9999-12-31T23:59:59.999999Z", "-infinity or infinity"),
    ],
)
def test_partition_day_or_why_the_timestamp_cannot_be_stored(timestamp: str, day: date | str) -> None:
    ts = datetime.fromisoformat(timestamp)
    if isinstance(day, date):
        assert partition_day(ts) == day
    else:
        with pytest.raises(RecordError, match=day) as caught:
            partition_day(ts)
        assert caught.value.code == "unstorable_value"
