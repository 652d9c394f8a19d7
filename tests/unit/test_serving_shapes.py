"""WML v4 and Open Inference Protocol bodies as a record's blocks: the same record as ``{"fields", "values"}``."""

from __future__ import annotations

from typing import Any

import pytest

from stream_logger import RecordError
from stream_logger.contract import MAX_CALL_ROWS
from stream_logger.records import decode
from stream_logger.scoring_call import as_table, encode_call

FIELDS = ["Age", "Sex", "LoanAmount"]
ROWS = [[33, "female", 1200.0], [41, "male", 5400.5]]
PLAIN = {"fields": FIELDS, "values": ROWS}


def _tensor(name: str, shape: list[Any], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


OIP_REQUEST = {
    "inputs": [
        _tensor("Age", [2], "INT64", [33, 41]),
        _tensor("Sex", [2, 1], "BYTES", ["female", "male"]),
        _tensor("LoanAmount", [2], "FP64", [1200.0, 5400.5]),
    ]
}
OIP_RESPONSE = {
    "model_name": "credit",
    "outputs": [
        _tensor("prediction", [2], "BYTES", ["Risk", "No Risk"]),
        _tensor("probability", [2, 2], "FP32", [0.3, 0.7, 0.8, 0.2]),
    ],
}


def _record_of(request: Any, response: Any) -> Any:
    call: Any = {"request": request, "response": response, "subscription_id": "credit", "scoring_id": "x"}
    return decode(encode_call(call, True).value)


def test_a_wml_v4_body_is_the_same_record_as_fields_and_values() -> None:
    wml = _record_of({"input_data": [PLAIN]}, {"predictions": [{"fields": ["prediction"], "values": [["a"], ["b"]]}]})
    plain = _record_of(PLAIN, {"fields": ["prediction"], "values": [["a"], ["b"]]})
    assert wml.request == plain.request and wml.response == plain.response


def test_an_open_inference_protocol_body_gives_a_field_per_tensor_and_arrays_for_wider_ones() -> None:
    record = _record_of(OIP_REQUEST, OIP_RESPONSE)
    assert record.request.fields == FIELDS and record.request.values == ROWS
    assert record.response is not None
    assert record.response.fields == ["prediction", "probability"]
    assert record.response.values == [["Risk", [0.3, 0.7]], ["No Risk", [0.8, 0.2]]]


def test_nested_tensor_data_and_more_dimensions() -> None:
    body = {"inputs": [_tensor("image", [2, 2, 2], "FP32", [[[1, 2], [3, 4]], [[5, 6], [7, 8]]])]}
    table = as_table(body, "request")
    assert table is not None and table.values == [[[[1, 2], [3, 4]]], [[[5, 6], [7, 8]]]]


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        ({"input_data": []}, "request.input_data", "non-empty list"),
        ({"input_data": [PLAIN, PLAIN]}, "request.input_data", "log one record for each"),
        ({"input_data": [{"fields": FIELDS}]}, "request.input_data[0]", '"values"'),
        ({"inputs": [{"name": "a", "data": [1]}]}, "request.inputs[0]", "a tensor must be"),
        ({"inputs": [_tensor("a", [2], "INT64", [1, 2, 3])]}, "request.inputs[0].data", "the shape says 2"),
        ({"inputs": [_tensor("a", [3], "INT64", [1, 2])]}, "request.inputs[0].data", "the shape says 3"),
        ({"inputs": [_tensor("a", [True], "INT64", [1])]}, "request.inputs[0].shape", "sizes"),
        ({"inputs": [_tensor("a", [0], "INT64", [])]}, "request.inputs[0].shape", "0 rows"),
        ({"inputs": [_tensor("a", [MAX_CALL_ROWS + 1], "INT64", [])]}, "request.inputs[0].shape", "rows; 1 to"),
        (
            {"inputs": [_tensor("a", [2], "INT64", [1, 2]), _tensor("b", [3], "INT64", [1, 2, 3])]},
            "request.inputs[1].shape",
            "the first tensor has 2",
        ),
        ({"inputs": [_tensor("a", [1], "INT64", 5)]}, "request.inputs[0].data", "must be a list"),
        ({"something": 1}, "request", "WML v4 or Open Inference Protocol"),
    ],
)
def test_a_malformed_body_is_refused_with_where_and_why(body: Any, path: str, reason: str) -> None:
    with pytest.raises(RecordError) as refused:
        as_table(body, "request")
    assert refused.value.code == "invalid_record"
    assert refused.value.path == path and reason in refused.value.detail


def test_invalid_names_in_a_body_are_refused_as_for_fields_and_values() -> None:
    body = {"inputs": [_tensor("a", [1], "INT64", [1]), _tensor("a", [1], "INT64", [2])]}
    with pytest.raises(RecordError, match="duplicate field name"):
        _record_of(body, {"predictions": [{"fields": ["p"], "values": [[1]]}]})
