"""Hostile names become safe, readable identifiers, or are refused with a clear message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_logger.errors import IdentifierError, SubscriptionError
from stream_logger.identifiers import (
    MAX_IDENTIFIER_BYTES,
    MAX_TABLE_NAME_BYTES,
    RESERVED_WORDS,
    SYSTEM_COLUMNS,
    SYSTEM_SUFFIX,
    column_name_for,
    derived_names,
    feedback_names_for,
    partition_name_for,
    quote_ident,
    table_name_for,
    validate_schema_name,
)
from stream_logger.subscription import parse_spec

HOSTILE = [
    'x"; DROP SCHEMA public CASCADE; --',
    "Robert'); DROP TABLE students;--",
    '"',
    '""',
    "a\x00b",
    "Größe",
    "日本語",
    "🙂" * 60,
    "a" * 200,
    "",
    "   ",
    "select",
    "SELECT",
    "xmin",
    "ctid",
    "scoring_id",
    "1st",
    "__proto__",
    "a-b.c d",
]


def _is_safe(name: str) -> bool:
    return (
        0 < len(name.encode()) <= MAX_IDENTIFIER_BYTES
        and name.replace("_", "").isalnum()
        and name.isascii()
        and name == name.lower()
        and not name[0].isdigit()
    )


@pytest.mark.parametrize("name", ["datamart", "_x", "a1_b2", "x" * 63])
def test_valid_schema_names_pass(name: str) -> None:
    assert validate_schema_name(name) == name


@pytest.mark.parametrize(
    "name", ['x"; DROP SCHEMA public CASCADE; --', "Upper", "1abc", "", "x" * 64, "pg_temp", "a-b", "ü", "a b"]
)
def test_hostile_schema_names_are_refused_with_a_clear_message(name: str) -> None:
    with pytest.raises(IdentifierError, match="invalid schema name"):
        validate_schema_name(name)


def test_quote_ident_doubles_quotes_and_refuses_what_postgres_would_mangle() -> None:
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("select") == '"select"'
    for bad in ("", "a\x00b", "x" * 64, "é" * 32):
        with pytest.raises(IdentifierError):
            quote_ident(bad)


@pytest.mark.parametrize("field", HOSTILE)
def test_every_hostile_field_name_maps_to_a_safe_column(field: str) -> None:
    column = column_name_for(field, set())
    assert _is_safe(column), column
    assert column not in RESERVED_WORDS
    assert column not in SYSTEM_COLUMNS
    assert column not in {"oid", "tableoid", "xmin", "xmax", "cmin", "cmax", "ctid"}


def test_readable_mapping() -> None:
    assert column_name_for("LoanAmount", set()) == "loan_amount"
    assert column_name_for("HTTPStatus", set()) == "http_status"
    assert column_name_for("Loan Amount (EUR)", set()) == "loan_amount_eur"
    assert column_name_for("2nd", set()) == "f_2nd"
    assert column_name_for("select", set()) == "select_"
    assert column_name_for("", set()) == "field"


def test_collisions_and_case_variants_get_numeric_suffixes() -> None:
    taken: set[str] = set()
    out = []
    for field in ["Age", "age", "AGE", "a_g_e", "a-g-e", "scoring_id", "scoring_id_2"]:
        column = column_name_for(field, taken)
        taken.add(column)
        out.append(column)
    assert out == ["age", "age_2", "age_3", "a_g_e", "a_g_e_2", "scoring_id_2", "scoring_id_2_2"]
    assert len(set(out)) == len(out)


def test_taken_is_not_modified() -> None:
    taken = {"age"}
    column_name_for("Age", taken)
    assert taken == {"age"}


def test_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    a = column_name_for("x" * 200 + "a", set())
    b = column_name_for("x" * 200 + "b", set())
    assert a != b
    assert len(a) == len(b) == MAX_IDENTIFIER_BYTES
    taken = {a}
    again = column_name_for("x" * 200 + "a", taken)
    assert again != a and len(again) <= MAX_IDENTIFIER_BYTES


def test_table_names_leave_room_for_daily_partitions() -> None:
    for sid in HOSTILE:
        table = table_name_for(sid, set())
        assert table.startswith("payload_")
        assert _is_safe(table)
        assert len(table) <= MAX_TABLE_NAME_BYTES
        assert len(partition_name_for(table, "20240517")) <= MAX_IDENTIFIER_BYTES
    assert table_name_for("German Credit", set()) == "payload_german_credit"
    assert table_name_for("german_credit", {"payload_german_credit"}) == "payload_german_credit_2"
    long_taken = {table_name_for("z" * 300, set())}
    assert len(table_name_for("z" * 300, long_taken)) <= MAX_TABLE_NAME_BYTES


@pytest.mark.parametrize(
    ("subscription_id", "table"),
    [
        ("credit_pkey", "payload_credit_pkey_t"),
        ("credit_ts_idx", "payload_credit_ts_idx_t"),
        ("credit_p20251129", "payload_credit_p20251129_t"),
        ("Credit-Key", "payload_credit_key_t"),
        ("credit_p2025112", "payload_credit_p2025112"),  # not a day: no system suffix
    ],
)
def test_a_table_name_never_ends_like_a_name_derived_from_another(subscription_id: str, table: str) -> None:
    assert table_name_for(subscription_id, set()) == table


@given(st.text(st.sampled_from("ab_-pkeytsidx0123456789P"), max_size=80), st.sets(st.text("ab_p0123", max_size=12)))
def test_user_and_system_names_are_disjoint(subscription_id: str, taken_slugs: set[str]) -> None:
    taken = {f"payload_{slug}" for slug in taken_slugs} | {f"payload_{slug}_pkey" for slug in taken_slugs}
    table = table_name_for(subscription_id, taken)
    assert _is_safe(table) and len(table) <= MAX_TABLE_NAME_BYTES
    assert SYSTEM_SUFFIX.search(table) is None
    assert "__" not in table
    assert table not in taken and taken.isdisjoint(derived_names(table))
    for derived in (*derived_names(table), partition_name_for(table, "20251129")):
        assert SYSTEM_SUFFIX.search(derived) is not None


def test_a_table_whose_index_name_is_taken_gets_another_name() -> None:
    assert table_name_for("credit", {"payload_credit_pkey"}) == "payload_credit_2"


def test_partition_name_refuses_anything_but_a_day() -> None:
    with pytest.raises(IdentifierError):
        partition_name_for("payload_x", "2024-05-17")


def test_a_field_never_takes_a_feedback_tables_own_column() -> None:
    """The feedback table holds the payload fields' columns beside its own, and the labelled view shows
    ``labelled_at`` beside the payload's: a field named like one of them gets another column name."""
    assert column_name_for("labelled_at", set()) == "labelled_at_2"
    assert column_name_for("FeedbackId", set()) == "feedback_id_2"
    assert column_name_for("feedback_row", set()) == "feedback_row_2"


def test_the_feedback_table_and_view_are_named_from_the_payload_table() -> None:
    assert feedback_names_for("payload_german_credit") == ("feedback_german_credit", "labelled_german_credit")
    assert feedback_names_for("payload_credit_pkey_t") == ("feedback_credit_pkey_t", "labelled_credit_pkey_t")


def test_a_declaration_has_one_target_at_most() -> None:
    spec = {"subscription_id": "gc", "fields": [{"name": "Age", "type": "integer"}]}
    _, wanted, _ = parse_spec({**spec, "fields": [*spec["fields"], {"name": "Risk", "type": "text", "role": "target"}]})
    assert wanted == [("Age", "feature", "bigint"), ("Risk", "target", "text")]
    two = [{"name": "Risk", "type": "text", "role": "target"}, {"name": "Default", "type": "bool", "role": "target"}]
    with pytest.raises(SubscriptionError, match="one target field"):
        parse_spec({**spec, "fields": two})
