"""log()'s build and encode, and the fast path's check of what it wrote (no broker needed).

``scoring_call.encode_call`` must write exactly the bytes of ``encode(build_record(**call))`` for the same call, and
refuse what they cannot write for the same reason. With ``validate``, the fast path (``envelope.CallEnvelope``, the
"quick check" below) may vouch for a call only where ``records.decode`` accepts the bytes; anything else goes to
``records.decode``. So log() refuses a call exactly when the full decode would, for the same reason. The check
must also take the common calls, or it is dead code.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from stream_logger import Emitter, RecordError, records, scoring_call
from stream_logger.contract import MAX_CALL_ROWS, MAX_ROWS, MAX_VALUE_DEPTH, ScoringCall, Table
from stream_logger.encoding import encode
from stream_logger.samples import german_credit_record
from stream_logger.scoring_call import build_record
from tests.support import GOOD_DOCS, Frame, mutated_records

TS = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
_ARGS = tuple(ScoringCall.__annotations__)
"""The keywords of a log() call."""


def call_of(i: int = 1, *, rows: int = 1, with_meta: bool = False, **changes: Any) -> dict[str, Any]:
    """The arguments of a German-credit log() call with a fixed id and timestamp, then ``changes``."""
    r = german_credit_record(i, rows=rows, with_meta=with_meta)
    call = {
        "request": r["request"],
        "response": r["response"],
        "subscription_id": r["subscription_id"],
        "deployment_id": r["deployment_id"],
        "scoring_id": r["scoring_id"],
        "scoring_timestamp": TS,
        "response_time_ms": r["response_time_ms"],
        "asset_revision": r["asset_revision"],
        "status_code": r["status_code"],
        "tags": dict(r["tags"]),
    }
    call.update(changes)
    return call


def plain_call() -> dict[str, Any]:
    """The benchmark's call: request, response and subscription id only."""
    r = german_credit_record(3)
    return {"request": r["request"], "response": r["response"], "subscription_id": r["subscription_id"]}


def with_value(call: dict[str, Any], block: str, row: int, column: int, value: Any) -> dict[str, Any]:
    call = copy.deepcopy(call)
    call[block]["values"][row][column] = value
    return call


def with_block(call: dict[str, Any], block: str, key: str, value: Any) -> dict[str, Any]:
    call = copy.deepcopy(call)
    call[block][key] = value
    return call


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


class Str(str):
    pass


class Dict(dict[str, Any]):
    pass


class SubDatetime(datetime):
    pass


class FixedZone(tzinfo):
    def __init__(self, offset: timedelta | None) -> None:
        self.offset = offset

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return self.offset

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def _many_rows(count: int, **changes: Any) -> dict[str, Any]:
    call = copy.deepcopy(call_of(1, **changes))
    call["request"]["values"] = call["request"]["values"] * count
    call["response"]["values"] = call["response"]["values"] * count
    return call


BASE = call_of(1)
META = call_of(2, rows=3, with_meta=True)
NAMES = BASE["request"]["fields"]
FAILED = call_of(3, response=None, error="timeout")
FLAT = with_block(BASE, "response", "values", [["Risk", 0.7]])  # no value in a row holds a bracket

CORPUS: list[tuple[str, dict[str, Any]]] = [
    ("common", BASE),
    ("plain", plain_call()),
    ("with meta", META),
    ("meta apart", {**call_of(4, rows=2), "meta": {"fields": ["CustomerID"], "values": [["a"], ["b"]]}}),
    ("three rows", call_of(5, rows=3)),
    ("no optional fields", {**plain_call(), "scoring_id": "x", "scoring_timestamp": TS}),
    # non-finite numbers, and integers at the edge of 64 bits
    ("nan in a row", with_value(BASE, "request", 0, 1, math.nan)),
    ("inf in a row", with_value(BASE, "request", 0, 4, math.inf)),
    ("-inf in a response", with_value(BASE, "response", 0, 1, [-math.inf, 0.5])),
    ("nan time", call_of(1, response_time_ms=math.nan)),
    ("inf time", call_of(1, response_time_ms=math.inf)),
    ("negative time", call_of(1, response_time_ms=-1.0)),
    ("int time", call_of(1, response_time_ms=12)),
    ("bool time", call_of(1, response_time_ms=True)),
    ("2**63 time", call_of(1, response_time_ms=2**63)),
    ("2**64 time", call_of(1, response_time_ms=2**64)),
    ("2**63 in a row", with_value(BASE, "request", 0, 1, 2**63)),
    ("2**64 - 1 in a row", with_value(BASE, "request", 0, 1, 2**64 - 1)),
    ("2**64 in a row", with_value(BASE, "request", 0, 1, 2**64)),
    ("-(2**63) - 1 in a row", with_value(BASE, "request", 0, 1, -(2**63) - 1)),
    ("lone surrogate", with_value(BASE, "request", 0, 0, "\ud800")),
    # nesting
    ("depth 64", with_value(FLAT, "request", 0, 0, nested(MAX_VALUE_DEPTH))),
    ("depth 65", with_value(FLAT, "request", 0, 0, nested(MAX_VALUE_DEPTH + 1))),
    ("depth 64 in a response", with_value(FLAT, "response", 0, 1, nested(MAX_VALUE_DEPTH))),
    ("depth 65 in a response", with_value(FLAT, "response", 0, 1, nested(MAX_VALUE_DEPTH + 1))),
    ("depth 64 and a list", with_value(BASE, "request", 0, 0, nested(MAX_VALUE_DEPTH))),
    ("depth 65 in meta", with_value(META, "request", 0, 0, nested(MAX_VALUE_DEPTH + 1))),
    ("two of depth 40", with_value(with_value(BASE, "request", 0, 0, nested(40)), "request", 0, 2, nested(40))),
    ("brackets in strings", with_value(BASE, "request", 0, 0, "[{" * 40)),
    ("a tuple value", with_value(BASE, "request", 0, 0, (1, 2))),
    # rows
    ("short row", with_block(BASE, "request", "values", [[1] * 19])),
    ("long row", with_block(BASE, "request", "values", [[1] * 21])),
    ("short response row", with_block(BASE, "response", "values", [["Risk"]])),
    ("long meta row", with_block(META, "request", "meta", {"fields": ["CustomerID"], "values": [["a", 1]] * 3})),
    ("no rows", with_block(with_block(BASE, "request", "values", []), "response", "values", [])),
    ("a row not a list", with_block(BASE, "request", "values", [5])),
    ("tuple rows", with_block(BASE, "request", "values", [tuple(BASE["request"]["values"][0])])),
    ("10,000 rows", _many_rows(MAX_ROWS, response=FLAT["response"])),
    ("10,000 rows with a list each", _many_rows(MAX_ROWS)),
    # More rows than a record holds: log() splits the call (test_a_call_larger_than_a_record_is_split).
    ("unequal rows", with_block(call_of(6, rows=2), "response", "values", [["Risk", [0.1, 0.9]]])),
    ("unequal meta rows", with_block(META, "request", "meta", {"fields": ["CustomerID"], "values": [["a"]]})),
    ("over 8 MiB", with_value(BASE, "request", 0, 0, "x" * (8 << 20))),
    # field names
    ("empty name", with_block(BASE, "request", "fields", ["", *NAMES[1:]])),
    ("long name", with_block(BASE, "request", "fields", ["x" * 257, *NAMES[1:]])),
    ("number name", with_block(BASE, "response", "fields", ["prediction", 7])),
    ("None name", with_block(BASE, "response", "fields", ["prediction", None])),
    ("duplicate names", with_block(BASE, "request", "fields", [NAMES[1], *NAMES[1:]])),
    ("duplicate response names", with_block(BASE, "response", "fields", ["prediction", "prediction"])),
    ("new names", with_block(BASE, "response", "fields", ["label", "scores"])),
    ("names copied", with_block(BASE, "request", "fields", ["".join(list(name)) for name in NAMES])),
    ("names as str subclass", with_block(BASE, "request", "fields", [Str(name) for name in NAMES])),
    ("names as a tuple", with_block(BASE, "request", "fields", tuple(NAMES))),
    ("names as a string", with_block(BASE, "response", "fields", "ab")),
    ("names unhashable", with_block(BASE, "response", "fields", ["prediction", ["probability"]])),
    ("names an array", with_block(BASE, "response", "fields", ["prediction", np.array([1, 2])])),
    ("no names", with_block(BASE, "response", "fields", [])),
    # ids
    ("128-char id", call_of(1, scoring_id="i" * 128)),
    ("129-char id", call_of(1, scoring_id="i" * 129)),
    ("empty id", call_of(1, scoring_id="")),
    ("number id", call_of(1, scoring_id=5)),
    ("uuid id", call_of(1, scoring_id=uuid.UUID(int=5))),
    ("str subclass id", call_of(1, scoring_id=Str("abc"))),
    ("no subscription", call_of(1, subscription_id=None)),
    ("empty subscription", call_of(1, subscription_id="")),
    ("long subscription", call_of(1, subscription_id="s" * 257)),
    ("str subclass subscription", call_of(1, subscription_id=Str("german-credit"))),
    ("invisible in a subscription", call_of(1, subscription_id="german\u200bcredit")),
    ("control in a subscription", call_of(1, subscription_id="german\ncredit")),
    ("NFKC subscription", call_of(1, subscription_id="ｇerman-credit")),
    ("NUL in a subscription", call_of(1, subscription_id="german\x00credit")),
    ("NUL in a deployment", call_of(1, deployment_id="v\x001")),
    ("NUL in a user id", call_of(1, user_id="u\x00")),
    ("NUL in a tag name", call_of(1, tags={"e\x00nv": "x"})),
    ("NUL in a row value", with_value(BASE, "request", 0, 0, "a\x00b")),
    ("empty deployment", call_of(1, deployment_id="")),
    ("long deployment", call_of(1, deployment_id="d" * 257)),
    ("256-char user", call_of(1, user_id="u" * 256)),
    ("257-char user", call_of(1, user_id="u" * 257)),
    ("empty request id", call_of(1, request_id="")),
    ("number trace id", call_of(1, trace_id=5)),
    ("asset revision subclass", call_of(1, asset_revision=Str("r"))),
    ("all ids", call_of(1, user_id="u", request_id="r", trace_id="t", asset_revision="a")),
    # timestamps
    ("naive", call_of(1, scoring_timestamp=datetime(2025, 1, 1))),
    ("naive text", call_of(1, scoring_timestamp="2025-01-01T00:00:00")),
    ("text", call_of(1, scoring_timestamp="2025-01-01T00:00:00.5+05:30")),
    ("not a time", call_of(1, scoring_timestamp="yesterday")),
    ("a number time", call_of(1, scoring_timestamp=1735689600)),
    ("+05:30", call_of(1, scoring_timestamp=TS.astimezone(timezone(timedelta(hours=5, minutes=30))))),
    ("-00:30", call_of(1, scoring_timestamp=TS.astimezone(timezone(timedelta(minutes=-30))))),
    ("offset of seconds", call_of(1, scoring_timestamp=TS.astimezone(timezone(timedelta(seconds=30))))),
    ("offset of -seconds", call_of(1, scoring_timestamp=TS.astimezone(timezone(-timedelta(seconds=30))))),
    ("offset of µs", call_of(1, scoring_timestamp=TS.astimezone(timezone(timedelta(microseconds=7))))),
    ("zoneinfo", call_of(1, scoring_timestamp=TS.astimezone(ZoneInfo("Europe/Berlin")))),
    ("zoneinfo LMT", call_of(1, scoring_timestamp=datetime(1890, 5, 6, tzinfo=ZoneInfo("Europe/Amsterdam")))),
    ("custom tzinfo", call_of(1, scoring_timestamp=datetime(2025, 1, 1, tzinfo=FixedZone(timedelta(hours=2))))),
    ("tzinfo of no offset", call_of(1, scoring_timestamp=datetime(2025, 1, 1, tzinfo=FixedZone(None)))),
    ("datetime subclass", call_of(1, scoring_timestamp=SubDatetime(2025, 1, 1, tzinfo=UTC))),
    ("naive datetime subclass", call_of(1, scoring_timestamp=SubDatetime(2025, 1, 1))),
    ("year 1", call_of(1, scoring_timestamp=datetime(1, 1, 1, tzinfo=UTC))),
    ("year 1 ahead", call_of(1, scoring_timestamp=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))),
    (
        "year 1 ahead by seconds",
        call_of(1, scoring_timestamp=datetime(1, 1, 1, tzinfo=timezone(timedelta(seconds=30)))),
    ),
    ("year 9999", call_of(1, scoring_timestamp=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))),
    ("year 999", call_of(1, scoring_timestamp=datetime(999, 1, 1, tzinfo=UTC))),
    # numpy values
    ("numpy int in a row", with_value(BASE, "request", 0, 1, np.int64(7))),
    ("numpy float in a row", with_value(BASE, "request", 0, 4, np.float64(2.5))),
    ("numpy nan in a row", with_value(BASE, "request", 0, 4, np.float32("nan"))),
    ("numpy bool in a row", with_value(BASE, "request", 0, 4, np.bool_(True))),
    ("numpy str in a row", with_value(BASE, "request", 0, 0, np.str_("less_0"))),
    ("numpy array in a row", with_value(BASE, "response", 0, 1, np.array([0.25, 0.75]))),
    ("numpy rows", with_block(BASE, "response", "values", np.array([[0.1, 0.9]]))),
    ("numpy time", call_of(1, response_time_ms=np.float64(3.5))),
    ("numpy status", call_of(1, status_code=np.int64(200))),
    ("numpy rate", call_of(1, sampling_rate=np.float64(0.5))),
    # other shapes
    ("a Table", call_of(1, response=Table(["prediction", "probability"], [["Risk", [0.2, 0.8]]]))),
    ("a Table of tuple rows", call_of(1, response=Table(["prediction", "probability"], [("Risk", 0.2)]))),  # type: ignore[list-item]
    ("a frame", call_of(1, response=Frame({"prediction": ["Risk"], "probability": [0.7]}))),
    ("dicts", call_of(1, response=[{"prediction": "Risk", "probability": 0.7}])),
    ("a request dict subclass", call_of(1, request=Dict(BASE["request"]))),
    ("an ordered response", call_of(1, response=OrderedDict(BASE["response"]))),
    ("no request", call_of(1, request=None)),
    ("a string request", call_of(1, request="x")),
    ("a number response", call_of(1, response=5)),
    ("a bare array", call_of(1, response=np.zeros((1, 2)))),
    ("response keys missing", call_of(1, response={"fields": ["a"]})),
    # status codes, and a call without a response
    ("bool status", call_of(1, status_code=True)),
    ("float status", call_of(1, status_code=200.0)),
    ("status 99", call_of(1, status_code=99)),
    ("status 600", call_of(1, status_code=600)),
    ("text status", call_of(1, status_code="200")),
    ("failed with an error", FAILED),
    ("failed with an empty error", call_of(3, response=None, error="")),
    ("failed with a number error", call_of(3, response=None, error=5)),
    ("failed with a 500", call_of(3, response=None, status_code=500)),
    ("failed with 404.0", call_of(3, response=None, status_code=404.0)),
    ("failed with a bool status", call_of(3, response=None, status_code=True, error=None)),
    ("not failed: 399", call_of(3, response=None, status_code=399)),
    ("no response at all", call_of(3, response=None, status_code=None)),
    ("no response, nothing else", {**plain_call(), "response": None}),
    ("an error with a response", call_of(1, error="partial")),
    # tags
    ("tag number", call_of(1, tags={"env": 1})),
    ("tag None", call_of(1, tags={"env": None})),
    ("tag number key", call_of(1, tags={1: "x"})),
    ("tag empty key", call_of(1, tags={"": "x"})),
    ("tag long key", call_of(1, tags={"k" * 257: "x"})),
    ("tag value subclass", call_of(1, tags={"env": Str("x")})),
    ("tags subclass", call_of(1, tags=Dict(env="x"))),
    ("tags ordered", call_of(1, tags=OrderedDict(env=Str("x")))),
    ("tags as pairs", call_of(1, tags=[("env", "x")])),
    ("tags as a list", call_of(1, tags=["a"])),
    ("tags as a string", call_of(1, tags="ab")),
    ("tags as a number", call_of(1, tags=5)),
    ("no tags", call_of(1, tags={})),
    ("100 tags", call_of(1, tags={f"t{i}": "v" for i in range(100)})),
    ("101 tags", call_of(1, tags={f"t{i}": "v" for i in range(101)})),
    # sampling rates
    ("rate 0.5", call_of(1, sampling_rate=0.5)),
    ("rate 1", call_of(1, sampling_rate=1)),
    ("rate 1.0", call_of(1, sampling_rate=1.0)),
    ("rate True", call_of(1, sampling_rate=True)),
    ("rate 0", call_of(1, sampling_rate=0.0)),
    ("rate 1.5", call_of(1, sampling_rate=1.5)),
    ("rate nan", call_of(1, sampling_rate=math.nan)),
    ("rate text", call_of(1, sampling_rate="0.5")),
]

Outcome = tuple[Any, ...]


def _outcome(run: Callable[[], bytes]) -> Outcome:
    try:
        value = run()
    except RecordError as exc:
        return ("refused", exc.code, exc.path, exc.detail)
    except (TypeError, ValueError, OverflowError) as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("accepted", value)


def before(call: dict[str, Any]) -> Outcome:
    """What log(validate=True) did when every record went through the full decode: build, encode, decode."""

    def run() -> bytes:
        value = encode(build_record(**call))
        records.decode(value)
        return value

    return _outcome(run)


def encode_call(call: dict[str, Any], validate: bool) -> tuple[str, bytes]:
    fused: Callable[[Any, bool], scoring_call.Encoded] = scoring_call.encode_call
    encoded = fused(call, validate)
    return encoded.scoring_id, encoded.value


@contextmanager
def full_decodes() -> Iterator[mock.MagicMock]:
    """Watch the fused path's calls of ``records.decode`` (none: the quick check vouched for the call)."""
    with mock.patch.object(scoring_call, "decode", wraps=records.decode) as spy:
        yield spy


def now(call: dict[str, Any]) -> tuple[Outcome, bool]:
    """What the fused path does with ``call`` now, and whether the quick check vouched for it."""
    with full_decodes() as spy:
        outcome = _outcome(lambda: encode_call(call, True)[1])
    return outcome, outcome[0] == "accepted" and not spy.called


def assert_agrees(call: dict[str, Any]) -> bool:
    """Assert the fused path does what log() did before, and vouches only for bytes decode accepts; return whether
    the quick check took the call (the second time: the first may have taught it the layout)."""
    expected = before(call)
    fixed = call.get("scoring_id") is not None and call.get("scoring_timestamp") is not None
    quick = False
    for _ in range(2):
        outcome, quick = now(call)
        if quick:
            records.decode(outcome[1])  # raises if the quick check vouched for a record decode refuses
        if fixed or outcome[0] != "accepted":
            assert outcome == expected, f"before {expected[:3]}, now {outcome[:3]}"
        else:
            assert expected[0] == "accepted"
    return quick


# ------------------------------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize(("what", "call"), CORPUS, ids=[case[0] for case in CORPUS])
def test_the_fused_path_writes_the_bytes_of_build_and_encode(what: str, call: dict[str, Any]) -> None:
    call = {
        **call,
        "scoring_id": call.get("scoring_id", "fixed"),
        "scoring_timestamp": call.get("scoring_timestamp", TS),
    }
    expected = _outcome(lambda: encode(build_record(**call)))
    assert _outcome(lambda: encode_call(call, False)[1]) == expected
    if expected[0] == "accepted" and before(call)[0] == "accepted":
        assert _outcome(lambda: encode_call(call, True)[1]) == expected


@pytest.mark.parametrize(("what", "call"), CORPUS, ids=[case[0] for case in CORPUS])
def test_the_quick_check_vouches_only_for_what_decode_accepts(what: str, call: dict[str, Any]) -> None:
    for warm in (BASE, META, FAILED):  # the layouts the corpus's calls share
        assert now(warm)[0][0] == "accepted"
    assert_agrees(call)


QUICK = [
    "common",
    "plain",
    "with meta",
    "meta apart",
    "three rows",
    "no optional fields",
    "nan in a row",
    "-inf in a response",
    "int time",
    "2**63 in a row",
    "depth 64",
    "depth 64 in a response",
    "a tuple value",
    "tuple rows",
    "10,000 rows",
    "new names",
    "names copied",
    "names as str subclass",
    "128-char id",
    "256-char user",
    "all ids",
    "text",
    "+05:30",
    "-00:30",
    "offset of seconds",
    "zoneinfo",
    "year 1",
    "year 9999",
    "numpy float in a row",
    "numpy int in a row",
    "tags ordered",
    "numpy rows",
    "a Table",
    "a frame",
    "dicts",
    "a request dict subclass",
    "failed with an error",
    "failed with a 500",
    "an error with a response",
    "tags subclass",
    "tags as pairs",
    "100 tags",
    "rate 0.5",
    "rate 1",
]


def test_the_quick_check_takes_the_common_calls() -> None:
    corpus = dict(CORPUS)
    for what in QUICK:
        assert assert_agrees(corpus[what]), f"{what}: the quick check declined"
    # Generated ids and timestamps, as most services log.
    plain = plain_call()
    for _ in range(3):
        _, quick = now(plain)
    assert quick


def test_the_quick_check_leaves_the_doubtful_calls_to_decode() -> None:
    corpus = dict(CORPUS)
    doubtful = [
        "two of depth 40",
        "depth 64 and a list",
        "10,000 rows with a list each",
        "nan time",
        "numpy time",
        "custom tzinfo",
        "datetime subclass",
        "str subclass id",
        "float status",
    ]
    for what in doubtful:
        assert not assert_agrees(corpus[what]), f"{what}: the quick check took it"
        assert before(corpus[what])[0] == "accepted"


def test_a_generated_id_and_timestamp_are_written_as_build_record_would() -> None:
    call = plain_call()
    for validate in (False, True):
        scoring_id, value = encode_call(call, validate)
        obj = orjson.loads(value)
        assert obj["scoring_id"] == scoring_id and len(scoring_id) == 32
        timestamp = datetime.fromisoformat(obj["scoring_timestamp"])
        assert abs(datetime.now(UTC) - timestamp) < timedelta(minutes=1)
        assert value == encode(build_record(**call, scoring_id=scoring_id, scoring_timestamp=timestamp))


def test_log_refuses_and_accepts_what_it_did_before(tmp_path: Path) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, overflow="drop", max_buffer_bytes=1 << 30)
    strict = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, overflow="drop", max_buffer_bytes=1 << 30, strict=True)
    for what, call in CORPUS:
        refused = before(call)[0] != "accepted"
        invalid = em.stats().invalid
        scoring_id = em.log(**call)
        assert em.stats().invalid == invalid + refused, what
        assert refused or (type(scoring_id) is str and scoring_id), what
        if refused:
            with pytest.raises(RecordError):
                strict.log(**call)
        else:
            assert strict.log(**call) == scoring_id or call.get("scoring_id") is None, what


class Liar(str):
    """A name that claims to equal any string (its own text is empty, which is no valid name)."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


@pytest.mark.parametrize("rows", [MAX_ROWS + 1, 2 * MAX_ROWS + 5])
@pytest.mark.parametrize("flat", [False, True])
def test_a_call_larger_than_a_record_is_split(rows: int, flat: bool) -> None:
    """Records of MAX_ROWS rows, one scoring id, each naming its first row; decoded and joined, they are the call."""
    call = _many_rows(rows, response=FLAT["response"]) if flat else _many_rows(rows)
    call = {**call, "scoring_id": "big", "scoring_timestamp": TS}
    for validate in (False, True):
        encoded = scoring_call.encode_call(call, validate)  # type: ignore[arg-type]
        parts = [records.decode(v) for v in (encoded.value, *encoded.more)]
        assert encoded.scoring_id == "big" and {p.scoring_id for p in parts} == {"big"}
        assert [p.first_row for p in parts] == list(range(0, rows, MAX_ROWS))
        assert [len(p.request.values) for p in parts] == [MAX_ROWS] * (rows // MAX_ROWS) + [rows % MAX_ROWS]
        assert [v for p in parts for v in p.request.values] == call["request"]["values"]
        assert [v for p in parts if p.response for v in p.response.values] == call["response"]["values"]
        assert b'"first_row"' not in encoded.value  # the first record is written as any other


def test_a_call_of_more_rows_than_a_call_may_have_is_refused_from_its_shape() -> None:
    import numpy as np

    call = {**BASE, "request": {"fields": ["x"], "values": np.zeros((MAX_CALL_ROWS + 1, 1))}}
    outcome, _ = now(call)
    assert outcome[:3] == ("refused", "invalid_record", "request.values"), outcome


def test_names_that_only_compare_equal_are_written_as_the_known_names() -> None:
    """The one place the fused path knowingly differs from build + encode: it writes the remembered names, so the
    quick check never vouches for names it has not seen (build + encode write the empty name, decode refuses it)."""
    assert now(BASE)[0][0] == "accepted"
    call = with_block(BASE, "request", "fields", [Liar(""), *NAMES[1:]])
    assert before(call)[0] == "refused"
    outcome, quick = now(call)
    assert quick and records.decode(outcome[1]).request.fields == NAMES


def test_names_that_are_not_a_list_are_never_taken_for_a_known_layout() -> None:
    block: Any = {"fields": ["a", "b"], "values": [[1, 2]]}
    for name in ("request", "response"):
        assert now(call_of(1, **{name: block}))[0][0] == "accepted"
        for names in ("ab", ("a", "b")):
            call = call_of(1, **{name: Table(names, [[1, 2]])})  # type: ignore[arg-type]
            assert not now(call)[1]
            assert_agrees(call)


# ------------------------------------------------------------------------------------------ generated calls


def _call_of_doc(doc: Any) -> dict[str, Any] | None:
    """The log() call that writes ``doc``, if a call can (it has no other keys, and its version is 1)."""
    if not isinstance(doc, dict) or not set(doc) <= {*_ARGS, "schema_version"}:
        return None
    if "schema_version" in doc and (type(doc["schema_version"]) is not int or doc["schema_version"] != 1):
        return None
    return {name: doc.get(name) for name in _ARGS}


@pytest.mark.parametrize("doc", [doc for doc in GOOD_DOCS if _call_of_doc(doc) is not None])
def test_the_good_documents_agree(doc: dict[str, Any]) -> None:
    call = _call_of_doc(copy.deepcopy(doc))
    assert call is not None
    assert_agrees(call)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_records())
def test_the_quick_check_agrees_on_mutated_calls(doc: Any) -> None:
    call = _call_of_doc(doc)
    if call is not None:
        assert_agrees(call)
