"""CSV lines for COPY: each must read back, under PostgreSQL's CSV rules, as exactly the row it was made from.

``tests.support.read_line`` follows ``COPY ... (FORMAT csv, NULL 'null', ESCAPE '\\')`` as PostgreSQL parses it, and
``assert_line_means`` compares what it reads with a row's values the way the column types would read them.
``tests/integration/test_csv_copy.py`` checks the same against the real server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from stream_logger import csvcopy
from tests.support import assert_line_means

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
