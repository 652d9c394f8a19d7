"""Helpers that more than one test module uses (and the benchmarks): one place, so that no test module imports
another.

- scoring records as messages: valid ones, invalid ones with where and why they are refused, and hypothesis
  strategies that mutate valid ones;
- scoring records built directly as ``ScoringRecord`` objects, for datamart tests and benchmarks;
- the two paths a message can take: the compiled path checked against the reference, CSV lines for COPY read back
  as PostgreSQL reads them;
- Kafka and the datamart: producing, reading a topic back, datamarts, running workers, reading what they stored;
- services: free ports, and a TCP proxy that cuts a service off.

Fixtures that integration tests share are in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import socket
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import strategies as st

from stream_logger import csvcopy, datamart, envelope, fast_rows, records, samples
from stream_logger.config import Settings
from stream_logger.contract import (
    MAX_FIELDS,
    MAX_NAME_CHARS,
    MAX_SCORING_ID_CHARS,
    MAX_VALUE_DEPTH,
    Layout,
    ScoringRecord,
    Table,
)
from stream_logger.errors import RecordError
from stream_logger.identifiers import quote_ident
from stream_logger.kafka_clients import topic_partitions
from stream_logger.registry import create_partitions, declare
from stream_logger.rows import infer_type, rows_for
from stream_logger.samples import GERMAN_CREDIT_FEATURES
from stream_logger.subscription import Field, Source, Subscription
from stream_logger.worker import Worker, WorkerConfig, WorkerSummary

# ========================================================================== scoring records as messages (dicts)


def replaced(obj: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A copy of ``obj`` with the item at ``path`` replaced (or deleted, for ``...``)."""
    result = copy.deepcopy(obj)
    parent: Any = result
    for step in path[:-1]:
        parent = parent[step]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return result


def nested(depth: int) -> Any:
    """A value ``depth`` arrays deep: ``[[1]]`` for 2."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    """How many levels of arrays and objects ``value`` nests (0 for a scalar): the contract's rule, restated."""
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def subscription_id_fits(subscription_id: str) -> bool:
    """The cross-field rule on a subscription id the schemas cannot express, restated: no tag character, and at
    most :data:`MAX_NAME_CHARS` characters in NFKC form."""
    return not any(0xE0000 <= ord(ch) <= 0xE0FFF for ch in subscription_id) and (
        len(unicodedata.normalize("NFKC", subscription_id)) <= MAX_NAME_CHARS
    )


# The German-credit samples BAD is made from: one row, and five rows with meta.
def spool_records(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` spool records: keys ``id-<i>``, values ``{"n":<i>}``."""
    return [(f"id-{i}".encode(), b'{"n":%d}' % i) for i in range(n)]


class Frame:
    """Just enough of a pandas DataFrame for ``log()``: ``columns`` and ``frame[column].tolist()``."""

    def __init__(self, data: dict[str, list[Any]]) -> None:
        self.columns = list(data)
        self._data = {k: np.array(v, dtype=object) for k, v in data.items()}

    def __getitem__(self, column: str) -> Any:
        return self._data[column]


GOOD = samples.german_credit_record(7)
MULTI = samples.german_credit_record(8, rows=5, with_meta=True)


def _short_row(obj: dict[str, Any]) -> dict[str, Any]:
    return replaced(obj, ("request", "values", 3), obj["request"]["values"][3][:-1])


def _many_fields() -> dict[str, Any]:
    names = [f"f{i}" for i in range(MAX_FIELDS)]
    return {**GOOD, "request": {"fields": names, "values": [list(range(MAX_FIELDS))]}}


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # (what, record, path, words in the detail): records the validator refuses, with where and why
    ("short row", _short_row(MULTI), "request.values[3]", "19 values for 20 fields"),
    (
        "long row",
        replaced(GOOD, ("request", "values", 0), [*GOOD["request"]["values"][0], 1]),
        "request.values[0]",
        "21",
    ),
    ("row not an array", replaced(MULTI, ("request", "values", 2), {"a": 1}), "request.values[2]", "array"),
    ("no rows", replaced(GOOD, ("request", "values"), []), "request.values", "0 rows"),
    ("meta rows", replaced(MULTI, ("request", "meta", "values"), [["x"]]), "request.meta.values", "1 row for"),
    ("response rows", replaced(MULTI, ("response", "values"), MULTI["response"]["values"][:4]), "response.values", "4"),
    ("response row", replaced(GOOD, ("response", "values", 0), ["Risk"]), "response.values[0]", "1 value for 2"),
    ("duplicate field", replaced(GOOD, ("request", "fields", 5), "Age"), "request.fields[12]", "duplicate"),
    ("empty field name", replaced(GOOD, ("request", "fields", 1), ""), "request.fields[1]", "empty"),
    ("long field name", replaced(GOOD, ("request", "fields", 1), "x" * 257), "request.fields[1]", "257"),
    ("field name number", replaced(GOOD, ("response", "fields", 0), 3), "response.fields[0]", "string"),
    ("NUL in a field name", replaced(GOOD, ("request", "fields", 1), "Loan\x00"), "request.fields[1]", "NUL"),
    ("NUL in a response field", replaced(GOOD, ("response", "fields", 0), "p\x00"), "response.fields[0]", "NUL"),
    ("NUL in the subscription", replaced(GOOD, ("subscription_id",), "a\x00b"), "subscription_id", "NUL"),
    ("NUL in the deployment", replaced(GOOD, ("deployment_id",), "d\x00"), "deployment_id", "NUL"),
    ("NUL in the revision", replaced(GOOD, ("asset_revision",), "\x00"), "asset_revision", "NUL"),
    ("NUL in a tag name", replaced(GOOD, ("tags",), {"e\x00": "x"}), 'tags["e\\u0000"]', "NUL"),
    ("zero-width space", replaced(GOOD, ("subscription_id",), "caf\u200be"), "subscription_id", "U+200B"),
    ("bidi override", replaced(GOOD, ("subscription_id",), "\u202ecafe"), "subscription_id", "U+202E"),
    ("tag character", replaced(GOOD, ("subscription_id",), "cafe\U000e0041"), "subscription_id", "U+E0041"),
    ("control", replaced(GOOD, ("subscription_id",), "ca\nfe"), "subscription_id", "U+000A"),
    ("long once normal", replaced(GOOD, ("subscription_id",), "\ufb03" * 100), "subscription_id", "NFKC"),
    ("no fields", replaced(GOOD, ("response", "fields"), []), "response.fields", "0 field"),
    ("too many fields", _many_fields(), "", f"{MAX_FIELDS + 2} fields"),
    ("typo", {**GOOD, "scoring_timestmap": "x"}, "scoring_timestmap", "unknown field"),
    ("extra in request", replaced(GOOD, ("request", "rows"), 1), "request.rows", "unknown field"),
    ("extra in response", replaced(GOOD, ("response", "meta"), None), "response.meta", "unknown field"),
    ("no version", replaced(GOOD, ("schema_version",), ...), "schema_version", "required"),
    ("version string", replaced(GOOD, ("schema_version",), "1"), "schema_version", "string"),
    ("version bool", replaced(GOOD, ("schema_version",), True), "schema_version", "boolean"),
    ("no scoring_id", replaced(GOOD, ("scoring_id",), ...), "scoring_id", "required"),
    ("empty scoring_id", replaced(GOOD, ("scoring_id",), ""), "scoring_id", "empty"),
    ("long scoring_id", replaced(GOOD, ("scoring_id",), "x" * 129), "scoring_id", "129"),
    ("scoring_id number", replaced(GOOD, ("scoring_id",), 12), "scoring_id", "number"),
    ("no subscription", replaced(GOOD, ("subscription_id",), ...), "subscription_id", "required"),
    ("long subscription", replaced(GOOD, ("subscription_id",), "s" * 257), "subscription_id", "257"),
    ("long deployment", replaced(GOOD, ("deployment_id",), "d" * 257), "deployment_id", "257"),
    ("empty user", replaced(GOOD, ("user_id",), ""), "user_id", "empty"),
    ("trace number", replaced(GOOD, ("trace_id",), 5), "trace_id", "string"),
    ("no request", replaced(GOOD, ("request",), ...), "request", "required"),
    ("request array", replaced(GOOD, ("request",), [1]), "request", "object"),
    ("no response", replaced(GOOD, ("response",), ...), "response", "required unless"),
    ("null response", replaced(GOOD, ("response",), None), "response", "required unless"),
    ("empty error", {**replaced(GOOD, ("response",), ...), "error": ""}, "error", "empty"),
    ("naive timestamp", replaced(GOOD, ("scoring_timestamp",), "2025-01-01T00:00:00"), "scoring_timestamp", "offset"),
    ("space", replaced(GOOD, ("scoring_timestamp",), "2025-01-01 00:00:00Z"), "scoring_timestamp", "RFC 3339"),
    ("Feb 30", replaced(GOOD, ("scoring_timestamp",), "2024-02-30T00:00:00Z"), "scoring_timestamp", "RFC 3339"),
    ("Feb 29", replaced(GOOD, ("scoring_timestamp",), "2100-02-29T00:00:00Z"), "scoring_timestamp", "RFC 3339"),
    ("leap second", replaced(GOOD, ("scoring_timestamp",), "2016-12-31T23:59:60Z"), "scoring_timestamp", "RFC 3339"),
    ("hour 24", replaced(GOOD, ("scoring_timestamp",), "2025-01-01T24:00:00Z"), "scoring_timestamp", "RFC 3339"),
    ("date only", replaced(GOOD, ("scoring_timestamp",), "2025-01-01"), "scoring_timestamp", "RFC 3339"),
    ("compact", replaced(GOOD, ("scoring_timestamp",), "20250101T000000Z"), "scoring_timestamp", "RFC 3339"),
    ("newline", replaced(GOOD, ("scoring_timestamp",), "2025-01-01T00:00:00Z\n"), "scoring_timestamp", "RFC 3339"),
    ("epoch", replaced(GOOD, ("scoring_timestamp",), 1735689600), "scoring_timestamp", "string"),
    ("bool time", replaced(GOOD, ("response_time_ms",), True), "response_time_ms", "boolean"),
    ("negative time", replaced(GOOD, ("response_time_ms",), -0.5), "response_time_ms", "negative"),
    ("string time", replaced(GOOD, ("response_time_ms",), "12"), "response_time_ms", "string"),
    ("bool status", replaced(GOOD, ("status_code",), True), "status_code", "boolean"),
    ("fraction status", replaced(GOOD, ("status_code",), 200.5), "status_code", "integer"),
    ("status 99", replaced(GOOD, ("status_code",), 99), "status_code", "outside"),
    ("status 600", replaced(GOOD, ("status_code",), 600), "status_code", "outside"),
    ("rate 0", replaced(GOOD, ("sampling_rate",), 0), "sampling_rate", "outside"),
    ("rate 1.5", replaced(GOOD, ("sampling_rate",), 1.5), "sampling_rate", "outside"),
    ("bool rate", replaced(GOOD, ("sampling_rate",), True), "sampling_rate", "boolean"),
    ("tag number", replaced(GOOD, ("tags", "env"), 1), "tags.env", "string"),
    ("tag odd name", replaced(GOOD, ("tags", "a b"), 1), 'tags["a b"]', "string"),
    ("tag empty name", replaced(GOOD, ("tags", ""), "x"), 'tags[""]', "1 to"),
    ("tags array", replaced(GOOD, ("tags",), ["a"]), "tags", "object"),
    (
        "too deep",
        replaced(GOOD, ("request", "values", 0, 0), nested(MAX_VALUE_DEPTH + 1)),
        "request.values[0][0]",
        "64",
    ),
]

# Valid records at the edges of the contract.
GOOD_DOCS: list[dict[str, Any]] = [
    samples.german_credit_record(1),
    samples.german_credit_record(2, rows=4, with_meta=True),
    {**samples.german_credit_record(3), "response": None, "status_code": 404.0},
    {**samples.german_credit_record(4), "response": None, "error": "timeout", "tags": None, "user_id": None},
    {**samples.german_credit_record(5), "scoring_timestamp": "2024-02-29t23:59:59.5z", "sampling_rate": 1e-9},
    {
        **samples.german_credit_record(6),
        "scoring_id": "x" * MAX_SCORING_ID_CHARS,
        "subscription_id": "s" * MAX_NAME_CHARS,
    },
    {**samples.german_credit_record(7), "response_time_ms": 0, "schema_version": 1.0, "sampling_rate": 1},
]

SHORT_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SHORT_TEXT
)
JSON_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SHORT_TEXT, inner, max_size=3), max_leaves=6
)
EDGE_NUMBERS = st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, 1.5, 99, 100, 399, 399.0, 400, 400.0, 599, 600, 1e-300, 2])
EDGE_LENGTHS = st.sampled_from(
    [0, 1, MAX_SCORING_ID_CHARS, MAX_SCORING_ID_CHARS + 1, MAX_NAME_CHARS, MAX_NAME_CHARS + 1]
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Mostly well-formed date-times, with every part sometimes just out of range."""
    year = draw(st.sampled_from([0, 1, 1900, 2000, 2023, 2024, 2100, 9999, 10000]))
    month, day = draw(st.integers(1, 12) | st.integers(0, 13)), draw(st.integers(1, 28) | st.integers(28, 32))
    hour = draw(st.integers(0, 23) | st.just(24))
    minute, second = draw(st.integers(0, 59) | st.just(60)), draw(st.integers(0, 59) | st.just(60) | st.just(61))
    fraction = draw(st.sampled_from(["", ".5", ".123456", ".1234567890", "."]))
    separator = draw(st.sampled_from(["T", "t", " ", "_"]))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "-05:30", "+23:59", "+24:00", "+05:60", "+0530", "", "+05"]))
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node below ``value``."""
    found = []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths_in(child, (*prefix, key)))
    return found


def parent_of(doc: Any, path: tuple[Any, ...]) -> Any:
    """What holds the node at ``path``."""
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated_records(draw: st.DrawFn) -> Any:
    """A valid German-credit record with one to three mutations."""
    doc = copy.deepcopy(
        draw(
            st.sampled_from(
                [
                    samples.german_credit_record(11),
                    samples.german_credit_record(12, rows=3, with_meta=True),
                    GOOD_DOCS[3],
                ]
            )
        )
    )
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_in(doc)
        kind = draw(st.sampled_from(["drop", "replace", "add", "number", "timestamp", "length", "rows"]))
        if kind == "drop" and paths:
            path = draw(st.sampled_from(paths))
            parent = parent_of(doc, path)
            del parent[path[-1]]
        elif kind == "replace" and paths:
            path = draw(st.sampled_from(paths))
            parent_of(doc, path)[path[-1]] = draw(JSON_VALUES)
        elif kind == "add":
            dicts = [()] + [path for path in paths if isinstance(parent_of(doc, (*path, None)), dict)]
            target = parent_of(doc, (*draw(st.sampled_from(dicts)), None))
            target[draw(st.sampled_from(["extra", "scoring_timestmap", "meta", "status_code", "error", "tags"]))] = (
                draw(JSON_VALUES)
            )
        elif kind == "number":
            key = draw(st.sampled_from(["response_time_ms", "status_code", "sampling_rate", "schema_version"]))
            doc[key] = draw(EDGE_NUMBERS | st.floats(allow_nan=False, allow_infinity=False) | st.booleans())
        elif kind == "timestamp":
            doc["scoring_timestamp"] = draw(timestamps() | SHORT_TEXT)
        elif kind == "length":
            key = draw(st.sampled_from(["scoring_id", "subscription_id", "deployment_id", "user_id", "error"]))
            doc[key] = "x" * draw(EDGE_LENGTHS)
        elif kind == "rows" and isinstance(doc.get("request"), dict):
            rows = doc["request"].get("values")
            if isinstance(rows, list) and rows and isinstance(rows[0], list):
                change = draw(st.sampled_from(["drop value", "add value", "add row", "drop row"]))
                if change == "drop value" and rows[0]:
                    rows[0].pop()
                elif change == "add value":
                    rows[0].append(draw(JSON_VALUES))
                elif change == "add row":
                    rows.append(list(rows[0]))
                elif len(rows) > 1:
                    rows.pop()
    if draw(st.booleans()) and isinstance(doc, dict) and isinstance(doc.get("request"), dict):
        fields = doc["request"].get("fields")
        if isinstance(fields, list) and len(fields) > 1:
            fields[1] = draw(st.sampled_from(["", fields[0], "x" * (MAX_NAME_CHARS + 1), "ok"]))
    return doc


DECODER_CORPUS = Path(__file__).resolve().parent / "corpus" / "decoder"


def decoder_corpus() -> dict[str, tuple[bytes, str]]:
    """The checked-in hostile messages (``tests/corpus/decoder``): name -> (message value, expected outcome of
    ``records.decode``: ``"ok"`` or a dead-letter code)."""
    expected: dict[str, str] = json.loads((DECODER_CORPUS / "expected.json").read_text(encoding="utf-8"))
    messages = DECODER_CORPUS / "messages"
    return {name: ((messages / f"{name}.json").read_bytes(), code) for name, code in expected.items()}


# ======================================================= scoring records as ScoringRecord objects (no decoding)

GERMAN_CREDIT_FIELDS = list(GERMAN_CREDIT_FEATURES)


def german_credit_row(i: int = 0) -> list[Any]:
    """One applicant (deterministic in ``i``), in GERMAN_CREDIT_FIELDS order."""
    return [
        ["less_0", "0_to_200", "greater_200", "no_checking"][i % 4],
        4 + i % 60,
        "credits_paid_to_date",
        "car_new",
        250 + (i * 37) % 11000,
        "less_100",
        "1_to_4",
        1 + i % 6,
        ["male", "female"][i % 2],
        "none",
        1 + i % 6,
        "real_estate",
        19 + i % 55,
        "none",
        "own",
        1 + i % 4,
        "skilled",
        1 + i % 2,
        "none",
        "yes",
    ]


def german_credit_record(
    scoring_id: str = "s-1",
    *,
    rows: int = 1,
    subscription_id: str = "german_credit",
    timestamp: datetime | None = None,
    meta: Table | None = None,
    **overrides: Any,
) -> ScoringRecord:
    """A German-credit scoring record with ``rows`` scored rows; the response echoes the request fields and adds
    ``prediction`` and ``probability``. (``samples.german_credit_record`` is the message form, a dict.)"""
    values = [german_credit_row(i) for i in range(rows)]
    response = Table(
        [*GERMAN_CREDIT_FIELDS, "prediction", "probability"],
        [
            [*v, "Risk" if i % 3 == 0 else "No Risk", [0.3, 0.7] if i % 3 == 0 else [0.8, 0.2]]
            for i, v in enumerate(values)
        ],
    )
    return ScoringRecord(
        scoring_id=scoring_id,
        scoring_timestamp=timestamp or datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
        subscription_id=subscription_id,
        request=Table(list(GERMAN_CREDIT_FIELDS), values),
        response=response,
        request_meta=meta,
        response_time_ms=12.5,
        status_code=200,
        user_id="u-1",
        tags={"env": "test"},
        **overrides,
    )


def simple_record(
    scoring_id: str,
    fields: list[str],
    values: list[list[Any]],
    *,
    subscription_id: str = "simple",
    response: Table | None = None,
    timestamp: datetime | None = None,
) -> ScoringRecord:
    """A record with the given request block (and optional response)."""
    return ScoringRecord(
        scoring_id=scoring_id,
        scoring_timestamp=timestamp or datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
        subscription_id=subscription_id,
        request=Table(fields, values),
        response=response,
    )


# ============================== the compiled path against the reference, and CSV lines as PostgreSQL reads them

CsvField = tuple[bool, str] | None
"""A field as PostgreSQL reads it: None for NULL, else (quoted, text)."""


def read_line(line: bytes) -> list[CsvField]:
    """The fields of one CSV line, by PostgreSQL's rules for the options in ``csvcopy.COPY_OPTIONS``."""
    assert csvcopy.COPY_OPTIONS == {"format": "csv", "null": "null", "escape": "\\"}
    text = line.decode()
    assert "\n" not in text and "\r" not in text, "a line break would end the row"
    fields: list[CsvField] = []
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


NOW = datetime(2026, 1, 2, tzinfo=UTC)
SOURCE = Source("topic", 1, 7)


def _subscription(sample: dict[str, Any]) -> Subscription:
    """The subscription auto-registration would declare for ``sample``'s fields (request, meta, response)."""
    fields: list[Field] = []
    request = sample["request"]
    for role, block in (("feature", request), ("meta", request.get("meta")), ("response", sample.get("response"))):
        if block is None:
            continue
        for i, name in enumerate(block["fields"]):
            type_ = infer_type([row[i] for row in block["values"]]) or "text"
            fields.append(Field(name, f"c{len(fields)}", role, type_))
    return Subscription(sample["subscription_id"], "dm", "payload_x", tuple(fields))


SUBSCRIPTIONS = {"german-credit": _subscription(samples.german_credit_record(1))}
META_SUB = _subscription(samples.german_credit_record(1, rows=2, with_meta=True))
# Records that leave a mapper with a recent decoder for each subscription's common layouts (one row, then two).
_WARM_UP = {
    ("german-credit", False): [samples.german_credit_record(1), samples.german_credit_record(2, rows=2)],
    ("german-credit", True): [samples.german_credit_record(1, with_meta=True)],
}


def _reference_rows(sub: Subscription, value: bytes) -> list[tuple[Any, ...]] | RecordError:
    try:
        record = records.decode(value)
        return rows_for(sub, record, SOURCE, NOW)
    except RecordError as exc:
        return exc


def _compiled_rows(sub: Subscription, value: bytes, *, csv: bool = False) -> fast_rows.Mapped | None:
    """What the compiled path maps ``value`` to, the same whether its layout is looked up (a fresh mapper) or a
    decoder that took an earlier message takes it (a mapper warmed with the common record of the subscription)."""

    def known(subscription_id: str, layout: Layout) -> Subscription | None:
        return sub if subscription_id == sub.subscription_id else None

    def mapped(mapper: fast_rows.Mapper) -> fast_rows.Mapped | None:
        return mapper.to_rows(value, SOURCE.topic, SOURCE.partition, SOURCE.offset, NOW)

    fresh = mapped(fast_rows.Mapper(known, csv=csv))
    warm = fast_rows.Mapper(known, csv=csv)
    for doc in _WARM_UP[sub.subscription_id, sub is META_SUB]:
        assert warm.to_rows(_json(doc), "t", 0, 0, NOW) is not None
    warmed = mapped(warm)
    assert (fresh is None) == (warmed is None), f"a recent decoder and a look-up disagree on {value!r}"
    if fresh is not None and warmed is not None:
        assert (fresh.rows, fresh.day, fresh.sub) == (warmed.rows, warmed.day, warmed.sub)
    return warmed


def _json(doc: Any) -> bytes:
    """``doc`` as a message value; bytes are one already (the fuzz tests' hostile messages)."""
    if isinstance(doc, bytes):
        return doc
    try:
        return orjson.dumps(doc)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        return json.dumps(doc, allow_nan=False).encode()


def assert_records_agree(doc: Any) -> bool:
    """The compiled decode is None or the reference's record; True when the compiled path took it."""
    value = _json(doc)
    fast = envelope.decode_fast(value)
    try:
        reference = records.decode_reference(value)
    except RecordError as exc:
        assert fast is None, f"the compiled path accepts what the reference refuses ({exc}): {doc!r}"
        return False
    assert fast is None or fast == reference, f"the paths build different records from {doc!r}"
    return fast is not None


def assert_rows_agree(sub: Subscription, doc: Any) -> bool:
    """The compiled rows are None or the reference's rows; True when the compiled path took it."""
    value = _json(doc)
    mapped = _compiled_rows(sub, value)
    reference = _reference_rows(sub, value)
    if isinstance(reference, RecordError):
        assert mapped is None, f"the compiled path maps what the reference refuses ({reference}): {doc!r}"
        return False
    if mapped is None:
        return False
    assert mapped.rows == reference, f"the paths build different rows from {doc!r}"
    assert [type(v) for v in mapped.rows[0]] == [type(v) for v in reference[0]]
    assert mapped.sub is sub and not mapped.csv
    assert mapped.day == records.decode(value).scoring_timestamp.astimezone(UTC).date()
    # The same, written as CSV lines for COPY where the message allows it.
    as_csv = _compiled_rows(sub, value, csv=True)
    assert as_csv is not None and (as_csv.sub, as_csv.day) == (mapped.sub, mapped.day)
    if b"\\" in value:
        assert not as_csv.csv and as_csv.rows == reference
    else:
        assert as_csv.csv and len(as_csv.rows) == len(reference)
        for line, row in zip(as_csv.rows, reference, strict=True):
            assert_line_means(line, row)
    return True


# ======================================================================================= Kafka and the datamart


def unique_name(prefix: str) -> str:
    """A name no other test uses: ``prefix_<12 hex digits>`` (valid as topic and as schema name)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def produce(
    settings: Settings, topic: str, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None
) -> None:
    """Send messages and wait until every one is acknowledged."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(acks="all", linger_ms=5))
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=v, key=keys[i] if keys is not None else None) for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_all(
    settings: Settings, topic: str, expected: int, timeout_s: float = 30.0
) -> list[tuple[bytes, bytes]]:
    """Every (key, value) in ``topic``, reading until ``expected`` messages arrived or ``timeout_s`` passed."""
    consumer = AIOKafkaConsumer(
        topic, **settings.aiokafka_kwargs(auto_offset_reset="earliest", enable_auto_commit=False)
    )
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                out.extend((m.key, m.value) for m in messages)
        if len(out) >= expected:  # anything more (duplicates) shows up within a moment
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                out.extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    return out


async def kafka_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets in Kafka, per partition of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, [topic])
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def setup_datamart(settings: Settings, schema: str) -> None:
    conn = await asyncpg.connect(settings.dsn)
    try:
        await datamart.setup(conn, schema)
    finally:
        await conn.close()


async def drop_schema(settings: Settings, name: str) -> None:
    """Drop a test's schema and everything in it, if it exists."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
    finally:
        await conn.close()


async def partitioned_datamart(
    conn: asyncpg.Connection, schema: str, *, subscriptions: int = 3, days: int = 150, rows: int = 10
) -> None:
    """A datamart with ``subscriptions`` subscriptions (``m0``, ``m1``, ...) of ``days`` day partitions each, from
    2024-01-01; ``rows`` rows on the first day of ``m0``, analyzed so that PostgreSQL's estimate knows them."""
    await datamart.setup(conn, schema)
    first_day = date(2024, 1, 1)
    declared: list[Subscription] = []
    for i in range(subscriptions):
        fields = [{"name": "x", "type": "integer"}, {"name": "note", "type": "text"}]
        declared.append(await declare(conn, schema, {"subscription_id": f"m{i}", "fields": fields}))
        await create_partitions(conn, declared[-1], [first_day + timedelta(days=d) for d in range(days)])
    q_table = f"{quote_ident(schema)}.{quote_ident(declared[0].table)}"
    await conn.execute(
        f"INSERT INTO {q_table} (scoring_id, row_index, scoring_timestamp) "
        "SELECT g::text, 0, '2024-01-01 12:00:00+00' FROM generate_series(1, $1::int) AS g",
        rows,
    )
    await conn.execute(f"ANALYZE {q_table}")


async def count_rows(settings: Settings, schema: str, table: str) -> int:
    conn = await asyncpg.connect(settings.dsn)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}")
        return n
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------- records for the worker

SUB = "credit_model"


def record(i: int, *, rows: int = 1, sub: str = SUB) -> dict[str, Any]:
    rec = samples.german_credit_record(i, rows=rows)
    rec["subscription_id"] = sub
    rec["scoring_id"] = f"s-{i}"
    return rec


def encode(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)


async def produce_records(settings: Settings, topic: str, start: int, n: int) -> None:
    recs = [record(i) for i in range(start, start + n)]
    await produce(settings, topic, [encode(r) for r in recs], [r["scoring_id"].encode() for r in recs])


DAY = datetime(2025, 11, 29, 12, 0, tzinfo=UTC)


def _on(rec: dict[str, Any], when: datetime) -> dict[str, Any]:
    rec["scoring_timestamp"] = when.isoformat().replace("+00:00", "Z")
    return rec


def sub_record(i: int, sub: str, when: datetime = DAY) -> dict[str, Any]:
    return _on(record(i, sub=sub), when)


async def produce_in_order(settings: Settings, topic: str, recs: list[dict[str, Any]]) -> None:
    """Every record on one partition, in this order."""
    await produce(settings, topic, [encode(r) for r in recs], [b"one"] * len(recs))


# --------------------------------------------------------------------------------------- what the worker stored


async def payload_table(conn: asyncpg.Connection, schema: str, sub: str = SUB) -> str:
    table: str = await conn.fetchval(
        f"SELECT table_name FROM {quote_ident(schema)}.subscriptions WHERE subscription_id = $1", sub
    )
    return f"{quote_ident(schema)}.{quote_ident(table)}"


async def stored_offsets(conn: asyncpg.Connection, schema: str, group: str) -> dict[int, int]:
    rows = await conn.fetch(
        f"SELECT partition, next_offset FROM {quote_ident(schema)}.consumer_offsets WHERE group_id = $1", group
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def tables_of(pg: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await pg.fetch(f"SELECT subscription_id, table_name FROM {quote_ident(schema)}.subscriptions")
    return {r["subscription_id"]: r["table_name"] for r in rows}


async def dead_letters(pg: asyncpg.Connection, schema: str) -> list[tuple[str, str]]:
    rows = await pg.fetch(f'SELECT error_code, detail FROM {quote_ident(schema)}.dead_letters ORDER BY "offset"')
    return [(r["error_code"], r["detail"]) for r in rows]


async def assert_exactly(conn: asyncpg.Connection, schema: str, n: int) -> None:
    """n distinct records stored, each once."""
    table = await payload_table(conn, schema)
    total, distinct = await conn.fetchrow(f"SELECT count(*), count(DISTINCT scoring_id) FROM {table}")
    assert (total, distinct) == (n, n)


async def wait_for_rows(conn: asyncpg.Connection, schema: str, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        exists = await conn.fetchval(
            f"SELECT count(*) FROM {quote_ident(schema)}.subscriptions WHERE subscription_id = $1", SUB
        )
        if exists:
            count = await conn.fetchval(f"SELECT count(*) FROM {await payload_table(conn, schema)}")
            if count >= n:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {n} rows within {timeout_s}s, have {count}")


# ------------------------------------------------------------------------------------------------------ workers


def config(topic: str, schema: str, **kw: Any) -> WorkerConfig:
    base: dict[str, Any] = dict(
        topics=(topic,),
        group_id=f"g-{schema}",
        schema=schema,
        until_caught_up=True,
        flush_interval_ms=100,
        max_record_age_s=None,  # the sample records are from 2025
        max_record_lead_s=None,
    )
    base.update(kw)
    return WorkerConfig(**base)


async def run_until_caught_up(settings: Settings, cfg: WorkerConfig) -> WorkerSummary:
    async with Worker(cfg, settings) as worker:
        return await asyncio.wait_for(worker.run(), 120)


def spawn_worker(topic: str, schema: str, *extra: str, stderr: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "stream_logger", "consume", "--topic", topic, "--schema", schema]
    args += ["--group", f"g-{schema}", "--batch-max-records", "100", "--flush-interval-ms", "50"]
    args += ["--max-record-age", "none", *extra]  # the sample records are from 2025
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)


# ----------------------------------------------------------------------------------------------------- emitters


def scoring_call(i: int, scoring_id: str, scoring_timestamp: datetime) -> dict[str, Any]:
    """The keywords of one ``Emitter.log()`` call: the ``i``-th German-credit sample, under the given id and time."""
    r = samples.german_credit_record(i)
    return {
        "request": r["request"],
        "response": r["response"],
        "subscription_id": r["subscription_id"],
        "scoring_id": scoring_id,
        "scoring_timestamp": scoring_timestamp,
    }


def logged_call(i: int) -> dict[str, Any]:
    """The keywords of the ``i``-th ``Emitter.log()`` call of a test: a German-credit sample under ``call-<i>``."""
    when = datetime(2025, 3, 1, 12, 0, i % 60, tzinfo=UTC)
    return {**scoring_call(i, f"call-{i:06d}", when), "response_time_ms": 3.5}


# ===================================================================================================== services

SHARED_PORTS = {9092, 9093, 55432}  # the dev stack's: never handed out, even if free for a moment


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (bound and released at once): for private services, or to be refused."""
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in SHARED_PORTS:
                sock.close()
                continue
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close the listening socket and every open connection, as a crashed server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._pipes):
            t.cancel()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.transport.abort()
            self._writers.discard(dst)
