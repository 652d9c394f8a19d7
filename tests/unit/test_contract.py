"""The contract's declarations agree with each other: a field added in one place and forgotten in another fails here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgspec

from stream_logger.contract import (
    ID_FIELDS,
    MAX_NAME_CHARS,
    NULLABLE_FIELDS,
    OPTIONAL_FIELDS,
    RECORD_KEYS,
    ScoringCall,
    ScoringRecord,
)
from stream_logger.envelope import CallEnvelope, Envelope
from stream_logger.identifiers import SYSTEM_COLUMN_DEFINITIONS, SYSTEM_COLUMNS, column_type

_SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "scoring_record.v1.json").read_text())


def test_the_fast_path_declares_every_key_of_a_record() -> None:
    for struct in (Envelope, CallEnvelope):
        assert {f.name for f in msgspec.structs.fields(struct)} == RECORD_KEYS


def test_log_takes_every_field_a_record_has_besides_its_version_and_place() -> None:
    call = set(ScoringCall.__annotations__)
    assert call - {"meta"} == RECORD_KEYS - {"schema_version", "first_row"}  # log() splits a large call itself
    assert set(OPTIONAL_FIELDS) <= call


def test_every_optional_field_has_a_system_column_in_the_same_order() -> None:
    stored = [column for column in SYSTEM_COLUMNS if column in OPTIONAL_FIELDS]
    assert stored == list(OPTIONAL_FIELDS)
    assert (*NULLABLE_FIELDS, "sampling_rate", "tags") == OPTIONAL_FIELDS  # records are built in this order
    start = SYSTEM_COLUMNS.index("deployment_id") + 1
    assert SYSTEM_COLUMNS[start : start + len(OPTIONAL_FIELDS)] == OPTIONAL_FIELDS


def test_a_record_declares_its_fields_in_the_order_its_builders_pass_them() -> None:
    names = [f.name for f in dataclasses.fields(ScoringRecord)]
    start = names.index("deployment_id") + 1
    assert names[start:] == [*OPTIONAL_FIELDS, "first_row", "schema_version"]


def test_the_id_fields_are_the_optional_names_the_schema_limits() -> None:
    limited = {
        name
        for name, spec in _SCHEMA["properties"].items()
        if spec.get("maxLength") == MAX_NAME_CHARS and spec.get("type") == ["string", "null"]
    }
    assert limited - {"deployment_id"} == set(ID_FIELDS)  # deployment_id has a default, so it is always written
    assert set(ID_FIELDS) <= set(NULLABLE_FIELDS)


def test_each_stored_field_has_a_column_type_the_schema_allows() -> None:
    json_types = {"text": "string", "integer": "integer", "double precision": "number", "jsonb": "object"}
    for name in ("deployment_id", *OPTIONAL_FIELDS):
        allowed = _SCHEMA["properties"][name]["type"]
        assert json_types[column_type(SYSTEM_COLUMN_DEFINITIONS[name])] in allowed, name
