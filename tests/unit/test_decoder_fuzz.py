"""Hostile message values: every one is a record or a ``RecordError``, and the compiled paths agree on it.

Any party that can produce to the topic may send any bytes. For each message, ``records.decode`` must return a
record or raise ``RecordError`` with a dead-letter code (any other exception would stop the worker), and the
compiled paths must agree with the reference (``tests/unit/test_compiled.py``): ``_decode_compiled`` builds the
reference's record or declines, ``compiled.Mapper.to_rows`` builds the reference's rows or declines.

Two sources of messages: the checked-in corpus (``tests/corpus/decoder``, see its README), and hypothesis,
which mutates valid records (structure first, then bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_logger import records
from stream_logger.errors import RecordError
from tests.unit.test_compiled import META_SUB, SUBSCRIPTIONS, assert_records_agree, assert_rows_agree

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "decoder"
EXPECTED: dict[str, str] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))


def outcome(value: bytes) -> str:
    """``"ok"`` when ``value`` decodes, else the dead-letter code; fails the test on any other exception."""
    try:
        records.decode(value)
    except RecordError as exc:
        assert exc.code in records.ERROR_CODES, f"an unknown error code {exc.code!r}: {exc}"
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
    assert sorted(path.stem for path in (CORPUS / "messages").iterdir()) == sorted(EXPECTED)
    assert set(EXPECTED.values()) <= records.ERROR_CODES | {"ok"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_corpus_message_has_its_expected_outcome(name: str) -> None:
    assert check_message((CORPUS / "messages" / f"{name}.json").read_bytes()) == EXPECTED[name]
