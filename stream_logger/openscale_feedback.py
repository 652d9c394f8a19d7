"""OpenScale's feedback data read into a table: rows as lists with their ``fields``, or CSV text (a header line
with ``data_header=True``), as ``subscription.feedback_logging.store(feedback_data, fields, data_header,
data_delimiter)`` takes them. No I/O.

CSV holds text only, so each value is typed here: by the type of the subscription's field of that name when it
has one (``"31"`` is 31 in a bigint column, stays ``"31"`` in a text column; ``"[0.3, 0.7]"`` is an array of
numbers), else by its look (an integer, a number, else text). An empty value is null. A value its column cannot
take is refused here, with its line and field, rather than dead-lettered later.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .contract import Table
from .errors import RecordError

__all__ = ["feedback_table", "typed_value"]

_INTEGER: Final = re.compile(r"^[+-]?\d+$")
_NUMBER: Final = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_BOOLEANS: Final = {
    "true": True,
    "t": True,
    "yes": True,
    "1": True,
    "false": False,
    "f": False,
    "no": False,
    "0": False,
}


def feedback_table(
    feedback_data: Any,
    fields: Sequence[str] | None,
    *,
    data_header: bool = False,
    data_delimiter: str = ",",
    types: Mapping[str, str] | None = None,
) -> Table:
    """``feedback_data`` (a list of rows as lists, or CSV text) as a :class:`~stream_logger.contract.Table`.

    ``fields`` names the columns; with ``data_header`` the first row (or CSV line) does, and ``fields`` must be
    None. ``types`` maps field names to the subscription's column types (``bigint``, ``float8``, ``text``,
    ``boolean``, ``float8[]``, ``jsonb``): CSV values are typed by them (see the module's docstring); rows given as
    lists are taken as they are. Raises :class:`~stream_logger.errors.RecordError` saying where.
    """
    if isinstance(feedback_data, str):
        if len(data_delimiter) != 1:
            raise RecordError("invalid_record", "data_delimiter", "must be one character")
        lines = [row for row in csv.reader(io.StringIO(feedback_data), delimiter=data_delimiter) if row]
        header, rows = _split_header(lines, fields, data_header)
        types = types or {}
        values = [
            [
                typed_value(text, types.get(name), f"feedback_data line {n}, field {name!r}")
                for name, text in zip(header, row, strict=True)
            ]
            for n, row in _numbered(rows, header, data_header)
        ]
        return Table(fields=header, values=values)
    if not isinstance(feedback_data, Sequence) or not all(isinstance(r, list | tuple) for r in feedback_data):
        raise RecordError(
            "invalid_record",
            "feedback_data",
            f"expected rows as lists (with fields) or CSV text, not {type(feedback_data).__name__}",
        )
    header, rows = _split_header([list(r) for r in feedback_data], fields, data_header)
    return Table(fields=header, values=[row for _, row in _numbered(rows, header, data_header)])


def _split_header(
    rows: list[list[Any]], fields: Sequence[str] | None, data_header: bool
) -> tuple[list[str], list[list[Any]]]:
    if data_header:
        if fields is not None:
            raise RecordError("invalid_record", "fields", "give fields or data_header=True, not both")
        if not rows:
            raise RecordError("invalid_record", "feedback_data", "data_header=True, but there is no header line")
        header, rows = rows[0], rows[1:]
    elif fields is None or isinstance(fields, str):
        raise RecordError("invalid_record", "fields", "name the columns: fields=[...], or data_header=True")
    else:
        header = fields if isinstance(fields, list) else list(fields)
    if not all(isinstance(f, str) and f for f in header):
        raise RecordError("invalid_record", "fields", "every field name must be a non-empty string")
    return [str(f).strip() for f in header], rows


def _numbered(rows: list[list[Any]], header: list[str], data_header: bool) -> list[tuple[int, list[Any]]]:
    """Each row with its line number (1-based, the header counted), its length checked."""
    first = 2 if data_header else 1
    for n, row in enumerate(rows, start=first):
        if len(row) != len(header):
            raise RecordError(
                "invalid_record", f"feedback_data line {n}", f"{len(row)} values for {len(header)} fields"
            )
    return list(enumerate(rows, start=first))


def typed_value(text: str, type_: str | None, where: str) -> Any:
    """A CSV value as the value its column takes (``type_``: a column type, None when unknown); "" is null."""
    text = text.strip()
    if text == "":
        return None
    if type_ is None:
        if _INTEGER.match(text):
            return int(text)
        return float(text) if _NUMBER.match(text) else text
    try:
        if type_ == "text":
            return text
        if type_ == "bigint":
            return int(text) if _INTEGER.match(text) else _whole(float(text))
        if type_ == "float8":
            return float(text)
        if type_ == "boolean":
            return _BOOLEANS[text.lower()]
        if type_ == "jsonb":
            return _json_or_text(text)
        value = json.loads(text)
        if type_ == "float8[]" and not (isinstance(value, list) and all(_is_number(v) for v in value)):
            raise ValueError
        return value
    except (ValueError, KeyError):
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise RecordError("type_conflict", where, f"{shown!r} is not a {type_} value") from None


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _whole(number: float) -> int:
    if not number.is_integer():
        raise ValueError
    return int(number)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
