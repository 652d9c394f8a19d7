"""A feedback record mapped to the rows of its subscription's feedback table (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from stream_logger.contract import FeedbackRecord, Table
from stream_logger.errors import RecordError
from stream_logger.feedback_ingest import FeedbackIngest
from stream_logger.feedback_tables import feedback_columns
from stream_logger.subscription import Field, Source, Subscription

AT = datetime(2025, 6, 1, 12, tzinfo=UTC)
SOURCE = Source("t", 0, 7)
FIELDS = (
    Field("Age", "age", "feature", "bigint"),
    Field("Sex", "sex", "feature", "text"),
    Field("Sex", "sex_2", "response", "text"),  # a response echoing a feature: the feature's column takes it
    Field("prediction", "prediction", "prediction", "text"),
)
SUB = Subscription("gc", "dm", "payload_gc", FIELDS, target=Field("Risk", "risk", "target", "text"))


def _rows(record: FeedbackRecord) -> list[dict[str, Any]]:
    return [dict(zip(feedback_columns(SUB), row, strict=True)) for row in FeedbackIngest.rows(SUB, record, SOURCE, AT)]


def test_a_label_by_reference_is_one_row_naming_its_payload_row() -> None:
    (row,) = _rows(FeedbackRecord("f", "gc", AT, scoring_id="s-1", row_index=3, label="Risk", user_id="u"))
    assert row["feedback_id"] == "f" and row["feedback_row"] == 0
    assert (row["scoring_id"], row["row_index"], row["risk"], row["user_id"]) == ("s-1", 3, "Risk", "u")
    assert row["age"] is row["sex"] is row["prediction"] is row["extra"] is None
    assert (row["src_topic"], row["src_partition"], row["src_offset"], row["ingested_at"]) == ("t", 0, 7, AT)


def test_standalone_rows_fill_the_fields_columns_and_keep_the_rest_in_extra() -> None:
    data = Table(["Sex", "Age", "Risk", "prediction", "Note"], [["female", 33, "Risk", "No Risk", "x"], [None] * 5])
    first, second = _rows(FeedbackRecord("f", "gc", AT, data=data, label_field="Risk"))
    assert (first["feedback_row"], first["age"], first["sex"], first["sex_2"]) == (0, 33, "female", None)
    assert (first["risk"], first["prediction"], orjson.loads(first["extra"])) == ("Risk", "No Risk", {"Note": "x"})
    assert first["scoring_id"] is None and first["row_index"] is None
    assert second["feedback_row"] == 1 and second["risk"] is None and orjson.loads(second["extra"]) == {"Note": None}


def test_standalone_rows_take_the_targets_field_without_label_field() -> None:
    (row,) = _rows(FeedbackRecord("f", "gc", AT, data=Table(["Risk", "Age"], [["No Risk", 50]])))
    assert (row["risk"], row["age"]) == ("No Risk", 50)
    with pytest.raises(RecordError) as caught:
        _rows(FeedbackRecord("f", "gc", AT, data=Table(["y", "Age"], [["No Risk", 50]])))
    assert (caught.value.code, caught.value.path) == ("invalid_record", "data.fields")


@pytest.mark.parametrize(
    ("record", "code", "path"),
    [
        (FeedbackRecord("f", "gc", AT, scoring_id="s", label=1), "type_conflict", "label"),
        (FeedbackRecord("f", "gc", AT, scoring_id="s", label="a\x00"), "unstorable_value", "label"),
        (FeedbackRecord("f\x00", "gc", AT, scoring_id="s", label="a"), "unstorable_value", "feedback_id"),
        (
            FeedbackRecord("f", "gc", AT, data=Table(["Age", "Risk"], [["old", "Risk"]])),
            "type_conflict",
            "data.values[0][0]",
        ),
        # instants a timestamptz column cannot take as they are
        (
            FeedbackRecord(
                "f", "gc", datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), scoring_id="s", label="a"
            ),
            "unstorable_value",
            "labelled_at",
        ),
        (
            FeedbackRecord(
                "f", "gc", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), scoring_id="s", label="a"
            ),
            "unstorable_value",
            "labelled_at",
        ),
    ],
)
def test_what_a_column_cannot_take_is_refused_with_its_path(record: FeedbackRecord, code: str, path: str) -> None:
    with pytest.raises(RecordError) as caught:
        _rows(record)
    assert (caught.value.code, caught.value.path) == (code, path)


def test_a_labelled_at_in_another_offset_is_stored_as_its_utc_instant() -> None:
    (row,) = _rows(FeedbackRecord("f", "gc", AT.astimezone(timezone(timedelta(hours=2))), scoring_id="s", label="a"))
    assert row["labelled_at"] == AT and row["labelled_at"].tzinfo is UTC
