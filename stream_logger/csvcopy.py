"""COPY rows as CSV text, written by msgspec in one C call a row: the sink's fast encoding. No I/O.

asyncpg's binary COPY encodes every value in turn (two timestamps, ~20 features, a ``float8[]`` whose encoder
tests each element against ``collections.abc``): a quarter of the worker's CPU for the rows it writes. A row
encoded as JSON is already almost a PostgreSQL CSV line: strings double-quoted, numbers in shortest round-trip
form, ``true``/``false``, ``null``. With ``COPY ... (FORMAT csv, NULL 'null', ESCAPE '\\')``, PostgreSQL reads it as it
is, once the outer brackets are cut off and arrays are written as quoted ``{...}`` literals.

That holds for a row whose values came from a message **without a backslash**. JSON cannot hold a control
character, a quote or a backslash inside a string except as a backslash escape, so such a message's strings hold
none of them, and the only escapes msgspec writes are the ``\\"`` of JSON texts (the ``tags`` jsonb column), which
``ESCAPE '\\'`` reads back as ``"``. CSV's ``\\.`` end marker needs a backslash too. A message with a backslash
takes binary COPY (:func:`takes`). msgspec writes timestamps as RFC 3339 (with the offset they were decoded with,
always whole minutes) and never writes NaN or infinity as numbers (JSON has neither, so decoded values are finite).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

__all__ = ["COPY_OPTIONS", "line", "source", "takes"]

COPY_OPTIONS: Final[dict[str, str]] = {"format": "csv", "null": "null", "escape": "\\"}
"""The options of ``copy_to_table`` for lines made by :func:`line`."""

_encode = msgspec.json.Encoder().encode
_BRACES: Final = bytes.maketrans(b"[]", b"{}")
_BACKSLASH: Final = ord("\\")  # as an int, ``in`` is a bare memchr (a one-byte bytes needle costs 5 times more)


def takes(value: bytes) -> bool:
    """Whether rows decoded from the message ``value`` may be written as CSV lines: it holds no backslash."""
    return _BACKSLASH not in value


def line(
    scoring_id: str, index: int, system_values: Sequence[Any], columns: Sequence[Any], arrays: Sequence[int]
) -> bytes:
    """The CSV line (without its newline) of the row ``(scoring_id, index, *system_values, *columns)``; ``arrays`` are
    the indexes of the ``float8[]`` values in ``columns``. The values must come from a message :func:`takes`
    accepts."""
    if arrays:
        columns = list(columns)
        for k in arrays:
            value = columns[k]
            if value is not None:  # [0.1,null] -> "{0.1,null}": PostgreSQL's array literal, quoted in the line
                columns[k] = _encode(value).translate(_BRACES).decode()
    return _encode((scoring_id, index, *system_values, *columns))[1:-1]


def source(lines: list[bytes]) -> memoryview:
    """The COPY data for ``lines``."""
    return memoryview(b"\n".join(lines) + b"\n")
