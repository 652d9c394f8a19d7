"""CSV lines for COPY: each must read back, under PostgreSQL's CSV rules, as exactly the row it was made from.

``read_line`` follows ``COPY ... (FORMAT csv, NULL 'null', ESCAPE '\\')`` as PostgreSQL parses it, and
``assert_line_means`` compares what it reads with a row's values the way the column types would read them.
``tests/integration/test_csv_copy.py`` checks the same against the real server.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from stream_logger import csvcopy

Field = tuple[bool, str] | None
"""A field as PostgreSQL reads it: None for NULL, else (quoted, text)."""


def read_line(line: bytes) -> list[Field]:
    """The fields of one CSV line, by PostgreSQL's rules for the options in ``csvcopy.COPY_OPTIONS``."""
    assert csvcopy.COPY_OPTIONS == {"format": "csv", "null": "null", "escape": "\\"}
    text = line.decode()
    assert "\n" not in text and "\r" not in text, "a line break would end the row"
    fields: list[Field] = []
    i = 0
    while True:
        if text.startswith('"', i):
            i += 1
            chars: list[str] = []
            while text[i] != '"':
                if text[i] == "\\" and text[i + 1] in '"\\':  # ESCAPE applies before a quote or itself only
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            fields.append((True, "".join(chars)))
        else:
            end = text.find(",", i)
            end = len(text) if end < 0 else end
            raw = text[i:end]
            assert '"' not in raw, f"a quote inside an unquoted field: {raw!r}"
            fields.append(None if raw == "null" else (False, raw))
            i = end
        if i == len(text):
            return fields
        assert text[i] == ",", f"expected a comma at {i} in {text!r}"
        i += 1


def _array(text: str) -> list[float | None]:
    assert text.startswith("{") and text.endswith("}")
    inner = text[1:-1]
    return [None if x == "null" else float(x) for x in inner.split(",")] if inner else []


def _same_float(a: float, b: float) -> bool:
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def assert_line_means(line: bytes, row: tuple[Any, ...]) -> None:
    """``line`` reads back as ``row``: each value with its column type's reading of the text."""
    fields = read_line(line)
    assert len(fields) == len(row), f"{len(fields)} fields for {len(row)} values: {line!r}"
    for k, (field, value) in enumerate(zip(fields, row, strict=True)):
        where = f"value {k} ({value!r}) as {field!r}"
        if value is None:
            assert field is None, where
            continue
        assert field is not None, where
        quoted, text = field
        if isinstance(value, bool):
            assert not quoted and text == ("true" if value else "false"), where
        elif isinstance(value, int):
            assert not quoted and text.lstrip("-").isdigit() and int(text) == value, where
        elif isinstance(value, float):
            assert not quoted and _same_float(float(text), value), where
        elif isinstance(value, str):
            assert quoted and text == value, where
        elif isinstance(value, datetime):
            parsed = datetime.fromisoformat(text)
            assert quoted and parsed == value and parsed.utcoffset() == value.utcoffset(), where
        elif isinstance(value, list):
            read = _array(text)
            assert quoted and len(read) == len(value), where
            assert all(
                a is b or (a is not None and b is not None and _same_float(a, b))
                for a, b in zip(read, value, strict=True)
            )
        else:
            raise AssertionError(f"no CSV reading for {where}")


EDGE_ROWS: list[tuple[Any, ...]] = [
    ("id", 0, datetime(2025, 1, 1, tzinfo=UTC), None, "", "null", "NULL", "a,b", "é ü 中 😀", "\x7f", " padded "),
    (0.0, -0.0, 1.5, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, -2.5e-300, 2**63 - 1, -(2**63), True, False),
    (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))),
    (datetime(2024, 2, 29, 12, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))), '{"env":"demo","a":"b"}'),
    ([0.1, 0.9], [], [None], [1.0, None, -0.0, 1e300], None, "{0.1,0.9}", "[1,2]", "{}"),
]


@pytest.mark.parametrize("row", EDGE_ROWS, ids=range(len(EDGE_ROWS)))
def test_a_line_reads_back_as_its_row(row: tuple[Any, ...]) -> None:
    arrays = tuple(k for k, v in enumerate(row) if isinstance(v, list))
    head = ("tag", 1.0)  # the system columns between the row index and the columns
    line = csvcopy.line(f"id-{len(row)}", 7, head, row, arrays)
    assert_line_means(line, (f"id-{len(row)}", 7, *head, *row))


def test_lines_are_joined_into_copy_data_with_a_final_newline() -> None:
    lines = [csvcopy.line("a", 0, (), (1.5,), ()), csvcopy.line("b", 1, (None,), (), ())]
    assert bytes(csvcopy.source(lines)) == b'"a",0,1.5\n"b",1,null\n'


@pytest.mark.parametrize(
    ("value", "takes"),
    [
        (b'{"a":"b,c"}', True),
        (b'{"a":"\\u00e9"}', False),
        (b'{"a":"say \\"hi\\""}', False),
        (b'{"a":"\\\\."}', False),
        (b'{"a":"\\n"}', False),
    ],
)
def test_only_messages_without_a_backslash_are_taken(value: bytes, takes: bool) -> None:
    assert csvcopy.takes(value) is takes
