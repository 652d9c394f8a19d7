"""The scoring record contract: what decodes, what is refused (with which code and where), and round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from stream_logger.contract import DEFAULT_DEPLOYMENT_ID, ERROR_CODES, MAX_VALUE_DEPTH, ScoringRecord, Table
from stream_logger.encoding import encode, to_obj
from stream_logger.errors import RecordError
from stream_logger.records import decode, from_obj
from stream_logger.samples import GERMAN_CREDIT_FEATURES, german_credit_record
from tests.support import BAD, GOOD, MULTI, nested, replaced


def _bytes(obj: Any) -> bytes:
    return orjson.dumps(obj)


# ------------------------------------------------------------------------------------------------- good records


def test_a_german_credit_record_decodes_into_its_fields() -> None:
    record = decode(_bytes(GOOD))
    assert record.scoring_id == GOOD["scoring_id"]
    assert record.subscription_id == "german-credit"
    assert record.scoring_timestamp.tzinfo is not None
    assert record.request.fields == list(GERMAN_CREDIT_FEATURES)
    assert record.request.values == GOOD["request"]["values"]
    assert record.response is not None
    assert record.response.fields == ["prediction", "probability"]
    assert record.response.values[0][0] in ("Risk", "No Risk")
    assert record.row_count == 1
    assert record.tags == {"env": "demo"}
    assert not record.failed


def test_several_rows_with_meta() -> None:
    record = decode(_bytes(MULTI))
    assert record.row_count == 5
    assert record.request_meta == Table(["CustomerID"], [[f"C0000008-{n}"] for n in range(5)])


def test_minimal_record_gets_the_defaults() -> None:
    obj = {
        "schema_version": 1,
        "scoring_id": "a",
        "scoring_timestamp": "2025-03-01T12:00:00+02:00",
        "subscription_id": "s",
        "request": {"fields": ["x"], "values": [[1]]},
        "response": {"fields": ["prediction"], "values": [[0]]},
    }
    record = decode(_bytes(obj))
    assert record.deployment_id == DEFAULT_DEPLOYMENT_ID
    assert record.sampling_rate == 1.0
    assert record.tags == {}
    assert record.scoring_timestamp == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert record.scoring_timestamp.utcoffset() == timedelta(hours=2)


def test_null_optional_fields_mean_absent() -> None:
    nulls = dict.fromkeys(("deployment_id", "asset_revision", "sampling_rate", "tags", "user_id", "error"))
    record = decode(_bytes({**GOOD, **nulls, "request": {**GOOD["request"], "meta": None}}))
    assert record.deployment_id == DEFAULT_DEPLOYMENT_ID
    assert record.asset_revision is None
    assert record.sampling_rate == 1.0
    assert record.tags == {}
    assert record.request_meta is None


@pytest.mark.parametrize(
    "changes",
    [
        {"status_code": 503},
        {"status_code": 404.0},
        {"error": "model timed out"},
        {"status_code": 200, "error": "partial failure"},
    ],
)
def test_a_failed_call_needs_no_response(changes: dict[str, Any]) -> None:
    obj = {**replaced(GOOD, ("response",), ...), **changes}
    record = decode(_bytes(obj))
    assert record.response is None
    assert record.failed
    assert record.status_code is None or type(record.status_code) is int


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-01t00:00:00z",
        "2024-02-29T23:59:59.123456789-05:30",
        "2025-06-30T00:00:00-00:00",
        "0001-01-01T00:00:00Z",
    ],
)
def test_rfc3339_timestamps_are_accepted(value: str) -> None:
    assert decode(_bytes({**GOOD, "scoring_timestamp": value})).scoring_timestamp.tzinfo is not None


def test_any_json_value_may_sit_in_a_row() -> None:
    values = [[{"image": [[0, 1], [1, 0]]}, None, True, 1e300, 2**64 - 1, "", nested(MAX_VALUE_DEPTH)]]
    obj = {**GOOD, "request": {"fields": list("abcdefg"), "values": values}}
    assert decode(_bytes(obj)).request.values == values
    assert from_obj(obj).request.values == values


# -------------------------------------------------------------------------------------------------- bad records


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, "empty_message"),
        (b"", "empty_message"),
        (b"{", "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (b'{"a": NaN}', "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'"text"', "malformed_json"),
        (b'{"schema_version": 2, "whatever": true}', "unsupported_version"),
        (b'{"schema_version": 1.5}', "unsupported_version"),
    ],
)
def test_undecodable_messages(value: bytes | None, code: str) -> None:
    with pytest.raises(RecordError) as err:
        decode(value)
    assert err.value.code == code
    assert code in ERROR_CODES


def test_a_record_over_the_size_limit_is_too_large() -> None:
    data = _bytes(GOOD)
    assert decode(data, max_bytes=len(data)).scoring_id == GOOD["scoring_id"]
    with pytest.raises(RecordError) as err:
        decode(data, max_bytes=len(data) - 1)
    assert err.value.code == "too_large"


@pytest.mark.parametrize(("what", "obj", "path", "words"), BAD, ids=[case[0] for case in BAD])
def test_invalid_records_say_where_and_what(what: str, obj: dict[str, Any], path: str, words: str) -> None:
    for from_bytes in (True, False):
        with pytest.raises(RecordError) as err:
            decode(_bytes(obj)) if from_bytes else from_obj(obj)
        assert (err.value.code, err.value.path) == ("invalid_record", path), what
        assert words in err.value.detail
        assert str(err.value) == (f"{path}: {err.value.detail}" if path else err.value.detail)


@pytest.mark.parametrize("written", ["caf\u00e9", "cafe\u0301", "\uff43af\u00e9"])
def test_a_subscription_id_is_read_in_nfkc_form(written: str) -> None:
    record = decode(orjson.dumps({**GOOD, "subscription_id": written}))
    assert record.subscription_id == "caf\u00e9"


def test_the_readme_example_error() -> None:
    obj = german_credit_record(1, rows=5)
    obj["request"]["fields"].append("Extra")
    for row in obj["request"]["values"][:3]:
        row.append(0)
    with pytest.raises(RecordError, match=r"^request\.values\[3\]: 20 values for 21 fields$"):
        decode(_bytes(obj))


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        (replaced(GOOD, ("request", "values", 0, 1), float("nan")), "request.values[0][1]"),
        (replaced(GOOD, ("response_time_ms",), float("inf")), "response_time_ms"),
        (replaced(GOOD, ("request", "values", 0, 1), 2**64), "request.values[0][1]"),
        (replaced(GOOD, ("request", "values", 0, 1), (1, 2)), "request.values[0][1]"),
        (replaced(GOOD, ("request", "values", 0, 1), {1: "a"}), "request.values[0][1]"),
        (replaced(GOOD, ("request", "values", 0, 0), "\ud800"), "request.values[0][0]"),
        (replaced(GOOD, ("request", "values", 0, 0), np.int64(3)), "request.values[0][0]"),
    ],
)
def test_from_obj_refuses_what_json_cannot_carry(obj: dict[str, Any], path: str) -> None:
    with pytest.raises(RecordError) as err:
        from_obj(obj)
    assert (err.value.code, err.value.path) == ("invalid_record", path)


def test_from_obj_refuses_a_non_object() -> None:
    with pytest.raises(RecordError) as err:
        from_obj([GOOD])
    assert err.value.code == "malformed_json"


def test_error_messages_do_not_echo_huge_hostile_names() -> None:
    with pytest.raises(RecordError) as err:
        decode(_bytes({**GOOD, "x" * 10_000 + "\x00": 1}))
    assert len(str(err.value)) < 1000


# ---------------------------------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("obj", [GOOD, MULTI, {**replaced(GOOD, ("response",), ...), "error": "boom", "tags": {}}])
def test_decode_encode_round_trip(obj: dict[str, Any]) -> None:
    record = decode(_bytes(obj))
    assert decode(encode(record)) == record
    assert from_obj(to_obj(record)) == record


def test_a_record_built_in_python_round_trips() -> None:
    record = ScoringRecord(
        scoring_id="r-1",
        scoring_timestamp=datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-7))),
        subscription_id="german-credit",
        request=Table(["Age", "Sex"], [[33, "female"], [41, "male"]]),
        response=Table(["prediction", "probability"], [["Risk", [0.2, 0.8]], ["No Risk", [0.9, 0.1]]]),
        request_meta=Table(["id"], [["a"], ["b"]]),
        response_time_ms=3.5,
        status_code=200,
        sampling_rate=0.25,
        user_id="u",
        request_id="q",
        trace_id="t",
        tags={"k": "v"},
    )
    data = encode(record)
    assert b'"2025-05-06T07:08:09.123456-07:00"' in data
    assert decode(data) == record
    assert to_obj(record)["sampling_rate"] == 0.25


def test_utc_is_written_with_z_and_odd_offsets_as_utc() -> None:
    base = decode(_bytes(GOOD))
    base.scoring_timestamp = datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC"))
    assert to_obj(base)["scoring_timestamp"] == "2025-01-01T00:00:00Z"
    amsterdam_1890 = datetime(1890, 1, 1, tzinfo=ZoneInfo("Europe/Amsterdam"))  # offset +00:19:32
    base.scoring_timestamp = amsterdam_1890
    decoded = decode(encode(base))
    assert decoded.scoring_timestamp == amsterdam_1890
    assert to_obj(base)["scoring_timestamp"].endswith("Z")


def test_a_naive_timestamp_cannot_be_encoded() -> None:
    record = decode(_bytes(GOOD))
    record.scoring_timestamp = datetime(2025, 1, 1)
    with pytest.raises(RecordError) as err:
        encode(record)
    assert err.value.path == "scoring_timestamp"


def test_numpy_values_encode_as_json() -> None:
    grid = np.arange(6, dtype=np.int32).reshape(2, 3)
    record = ScoringRecord(
        scoring_id="np",
        scoring_timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        subscription_id="s",
        request=Table(["a", "b", "c", "d", "e"], [[np.float32(1.5), np.int64(7), np.bool_(True), grid[:, 1], grid]]),
        response=Table(["prediction", "probability"], [[np.str_("Risk"), np.array([0.25, 0.75])]]),
        response_time_ms=np.float64(2.0),
    )
    decoded = decode(encode(record))
    assert decoded.request.values == [[1.5, 7, True, [1, 4], [[0, 1, 2], [3, 4, 5]]]]
    assert decoded.response is not None
    assert decoded.response.values == [["Risk", [0.25, 0.75]]]
    assert decoded.response_time_ms == 2.0


def test_non_finite_floats_encode_as_null() -> None:
    record = decode(_bytes(GOOD))
    record.request.values[0][1] = float("nan")
    record.request.values[0][4] = np.float64("inf")
    assert decode(encode(record)).request.values[0][1:5:3] == [None, None]


def test_a_value_without_json_form_is_refused_by_encode() -> None:
    record = decode(_bytes(GOOD))
    record.request.values[0][0] = {1, 2}
    with pytest.raises(RecordError) as err:
        encode(record)
    assert err.value.code == "invalid_record"


def test_changing_a_decoded_record_does_not_make_bad_field_names_pass() -> None:
    record = decode(_bytes(GOOD))
    record.request.fields[1] = "Age"  # now a duplicate; the validator must not have remembered this list object
    bad = replaced(GOOD, ("request", "fields"), record.request.fields)
    with pytest.raises(RecordError) as err:
        decode(_bytes(bad))
    assert err.value.path == "request.fields[12]"
