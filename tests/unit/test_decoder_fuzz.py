"""Hostile message values: every one is a record or a ``RecordError``, and the compiled paths agree on it.

Any party that can produce to the topic may send any bytes. For each message, ``records.decode`` must return a
record or raise ``RecordError`` with a dead-letter code (any other exception would stop the worker), and the
compiled paths must agree with the reference (``tests/unit/test_fast_rows.py``): ``envelope.decode_fast`` builds the
reference's record or declines, ``fast_rows.Mapper.to_rows`` builds the reference's rows or declines.

Two sources of messages: the checked-in corpus (``tests/corpus/decoder``, see its README), and hypothesis,
which mutates valid records (structure first, then bytes).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stream_logger import contract
from stream_logger.errors import RecordError
from stream_logger.feedback import decode_message
from stream_logger.samples import german_credit_record
from tests.support import (
    DECODER_CORPUS,
    GOOD_DOCS,
    JSON_VALUES,
    META_SUB,
    SUBSCRIPTIONS,
    assert_records_agree,
    assert_rows_agree,
    decoder_corpus,
    mutated_records,
    parent_of,
    paths_in,
)

CORPUS = decoder_corpus()


def outcome(value: bytes) -> str:
    """``"ok"`` when ``value`` decodes (as either kind), else the dead-letter code; fails the test on any other
    exception."""
    try:
        decode_message(value)  # what the worker decodes with: a scoring or a feedback record
    except RecordError as exc:
        assert exc.code in contract.ERROR_CODES, f"an unknown error code {exc.code!r}: {exc}"
        return exc.code
    return "ok"


def check_message(value: bytes) -> str:
    """Assert that ``value`` decodes or is refused with a code, and that the compiled paths agree; its outcome."""
    result = outcome(value)
    assert_records_agree(value)
    for sub in (SUBSCRIPTIONS["german-credit"], META_SUB):
        assert_rows_agree(sub, value)
    return result


# ---------------------------------------------------------------------------------------------------- the corpus


def test_the_manifest_lists_every_message() -> None:
    assert sorted(path.stem for path in (DECODER_CORPUS / "messages").iterdir()) == sorted(CORPUS)
    assert {code for _, code in CORPUS.values()} <= contract.ERROR_CODES | {"ok"}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_corpus_message_has_its_expected_outcome(name: str) -> None:
    value, expected = CORPUS[name]
    assert check_message(value) == expected


# ------------------------------------------------------------------------------------------ generated messages

_SPOT = "\x01spot\x01"  # a string no record holds: marks where raw JSON text goes
_SPOT_JSON = orjson.dumps(_SPOT)
BASES = [german_credit_record(21), german_credit_record(22, rows=3, with_meta=True), GOOD_DOCS[3]]


def nested(depth: int, objects: bool = False) -> bytes:
    """``depth`` levels of arrays (or of objects) around a number."""
    return b'{"a":' * depth + b"1" + b"}" * depth if objects else b"[" * depth + b"1" + b"]" * depth


def spliced(doc: Any, path: tuple[Any, ...], raw: bytes, *, key: bytes | None = None, first: bool = False) -> bytes:
    """``doc`` as JSON with the value at ``path`` replaced by the raw JSON text ``raw``; with ``key``, the object at
    ``path`` gains the member ``key: raw`` instead (``first``: before its other members)."""
    doc = copy.deepcopy(doc)
    if key is None:
        parent_of(doc, path)[path[-1]] = _SPOT
        return orjson.dumps(doc).replace(_SPOT_JSON, raw, 1)
    target = parent_of(doc, (*path, None))
    members = list(target.items()) if first else []
    for name, _ in members:
        del target[name]
    target[_SPOT] = 0
    target.update(members)
    return orjson.dumps(doc).replace(_SPOT_JSON + b":0", key + b":" + raw, 1)


# Numbers msgspec misread, taking five digits of an exponent: infinite (read as 1.0), 1.0 (read as 0.0), 0.0 (1.0)
MISREAD_NUMBERS = [
    b"0." + b"0" * 9_999 + b"1e1000000",
    b"-0." + b"0" * 99_999 + b"1e100000",
    b"1" + b"0" * 10_000 + b"e-100000",
]
HOSTILE_VALUES = (
    st.sampled_from(
        [
            *MISREAD_NUMBERS,
            *(b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e400", b"-1e400", b"1e-400", b"1" + b"0" * 400),
            *(b"18446744073709551615", b"18446744073709551616", b"9223372036854775808", b"-9223372036854775809"),
            *(b"-0", b"-0.0", b"0.1e1", b"1E2", b"404.0", b"1.0", b"01", b"+1", b".5"),
            *(b'"\\ud800"', b'"\\udfff"', b'"\\ud83d\\ude00"', b'"\\u0000"', b'"a\\u0000b"', b'"\\ufeff"'),
            *(b'"\\\\"', b'"\\""', b'""', '"\uff53coring"'.encode(), b'"\xff"', b'"\xed\xa0\x80"', b'"a\x01"'),
            *(b"[]", b"{}", b"[[]]", b"[{}]", b'{"":1}', b"[null]", b"null", b"true", b"false"),
        ]
    )
    | st.builds(nested, st.sampled_from([3, 64, 65, 255, 1000, 1024, 2500]), st.booleans())
    | st.sampled_from([129, 257, 100_000]).map(lambda n: b'"' + b"x" * n + b'"')
    | JSON_VALUES.map(orjson.dumps)
)
HOSTILE_KEYS = st.sampled_from(
    [
        *(b'"schema_version"', b'"scoring_id"', b'"scoring_timestamp"', b'"subscription_id"', b'"request"'),
        *(b'"response"', b'"fields"', b'"values"', b'"meta"', b'"tags"', b'"status_code"', b'"error"'),
        *('"sc\u043ering_id"'.encode(), '"f\u0456elds"'.encode(), b'"scoring_id "', b'"Scoring_id"'),
        *(b'"scoring\\u005fid"', b'"\\u0000"', b'""', b'"zzz"', b'"\\ud800"'),
    ]
)
_BYTES = st.sampled_from(
    [b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"\x00", b"\xff", b"\xef\xbb\xbf", b" ", b"1", b"-", b"e"]
) | st.binary(min_size=1, max_size=4)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """A valid record, maybe mutated (``mutated_records``), with hostile JSON text spliced in, then maybe bytes
    flipped, inserted, deleted, cut off, or added around it."""
    doc = draw(st.sampled_from(BASES) | mutated_records())
    paths = paths_in(doc)
    splice = draw(st.sampled_from(["none", "value", "key"]))
    if splice == "value" and paths:
        value = spliced(doc, draw(st.sampled_from(paths)), draw(HOSTILE_VALUES))
    elif splice == "key":
        objects = [()] + [path for path in paths if isinstance(parent_of(doc, (*path, None)), dict)]
        path = draw(st.sampled_from(objects))
        value = spliced(doc, path, draw(HOSTILE_VALUES), key=draw(HOSTILE_KEYS), first=draw(st.booleans()))
    else:
        value = orjson.dumps(doc)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        at = draw(st.integers(0, len(value)))
        change = draw(st.sampled_from(["flip", "insert", "delete", "cut", "prefix", "suffix"]))
        if change == "flip" and at < len(value):
            value = value[:at] + bytes([value[at] ^ draw(st.integers(1, 255))]) + value[at + 1 :]
        elif change == "insert":
            value = value[:at] + draw(_BYTES) + value[at:]
        elif change == "delete":
            value = value[:at] + value[at + draw(st.integers(1, 8)) :]
        elif change == "cut":
            value = value[:at]
        elif change == "prefix":
            value = draw(_BYTES) + value
        else:
            value = value + draw(_BYTES | st.just(value))
    return value


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(hostile_messages())
@example(spliced(BASES[0], ("request", "fields", 0), nested(1000)))  # RecursionError out of msgspec
@example(spliced(BASES[0], ("request", "values", 0, 1), MISREAD_NUMBERS[0]))  # compiled accepted, reference refused
@example(spliced(BASES[0], ("response_time_ms",), MISREAD_NUMBERS[1]))  # the compiled record had -0.0, not -1.0
def test_a_hostile_message_is_a_record_or_a_record_error_and_the_paths_agree(value: bytes) -> None:
    check_message(value)
