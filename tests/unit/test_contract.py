"""The contract's declarations agree with each other: a field added in one place and forgotten in another fails here."""

from __future__ import annotations

import msgspec

from stream_logger.contract import OPTIONAL_FIELDS, RECORD_KEYS, ScoringCall
from stream_logger.envelope import CallEnvelope, Envelope
from stream_logger.identifiers import SYSTEM_COLUMNS
from stream_logger.rows import STORED_AS_THEY_ARE


def test_the_fast_path_declares_every_key_of_a_record() -> None:
    for struct in (Envelope, CallEnvelope):
        assert {f.name for f in msgspec.structs.fields(struct)} == RECORD_KEYS


def test_log_takes_every_field_a_record_has_besides_its_version() -> None:
    call = set(ScoringCall.__annotations__)
    assert call - {"meta"} == RECORD_KEYS - {"schema_version"}
    assert set(OPTIONAL_FIELDS) <= call


def test_every_optional_field_has_a_system_column_in_the_same_order() -> None:
    stored = [column for column in SYSTEM_COLUMNS if column in OPTIONAL_FIELDS]
    assert stored == list(OPTIONAL_FIELDS)
    assert set(STORED_AS_THEY_ARE) | {"sampling_rate", "tags"} == set(OPTIONAL_FIELDS)
    start = SYSTEM_COLUMNS.index("deployment_id") + 1
    assert SYSTEM_COLUMNS[start : start + len(OPTIONAL_FIELDS)] == OPTIONAL_FIELDS
