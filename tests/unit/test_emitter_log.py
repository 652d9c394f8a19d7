"""log() at the call site: what inputs it accepts, and what it does with a bad record (no broker needed)."""

from __future__ import annotations

import errno
import logging
import os
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_logger import Emitter, RecordError, ThreadedEmitter
from stream_logger.contract import Table
from stream_logger.errors import ConfigError, LifecycleError
from stream_logger.producer import RECORD_OVERHEAD_BYTES, producer_settings
from stream_logger.records import decode
from stream_logger.samples import german_credit_record
from stream_logger.scoring_call import as_table, build_record, encode_call, new_scoring_id
from stream_logger.spool import Spool
from tests.support import Frame

REQUEST = {"fields": ["Age", "Sex"], "values": [[33, "female"], [41, "male"]]}
RESPONSE = {"fields": ["prediction", "probability"], "values": [["No Risk", [0.8, 0.2]], ["Risk", [0.3, 0.7]]]}


def test_inputs_of_every_accepted_shape_give_the_same_table() -> None:
    expected = Table(fields=["Age", "Sex"], values=[[33, "female"], [41, "male"]])
    assert as_table(REQUEST, "request") == expected
    assert as_table([{"Age": 33, "Sex": "female"}, {"Age": 41, "Sex": "male"}], "request") == expected
    assert as_table(Frame({"Age": [33, 41], "Sex": ["female", "male"]}), "request") == expected
    numeric = as_table({"fields": ["a", "b"], "values": np.array([[1.5, 2.0], [3.0, 4.0]])}, "request")
    assert numeric == Table(fields=["a", "b"], values=[[1.5, 2.0], [3.0, 4.0]])
    assert type(numeric.values[0][0]) is float


def test_a_bare_array_is_refused_with_a_reason() -> None:
    with pytest.raises(RecordError, match="no field names"):
        as_table(np.zeros((2, 2)), "request")


def test_missing_id_and_timestamp_are_generated_in_utc() -> None:
    record = build_record(request=REQUEST, response=RESPONSE, subscription_id="s")
    assert len(record.scoring_id) == 32
    assert record.scoring_timestamp.utcoffset() is not None


def test_generated_scoring_ids_are_version_4_uuids_unique_across_a_fork() -> None:
    ids = [new_scoring_id() for _ in range(20_000)]
    for text in ids[:1_000]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, text)
    assert len(set(ids)) == len(ids)
    # A forked child (a pre-forking server's worker) must not repeat its parent's ids.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids, then leave at once
        os.write(write_end, "".join(new_scoring_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    parent_ids = {new_scoring_id() for _ in range(100)}
    assert len(child_ids) == 100 and not child_ids & parent_ids


def test_log_returns_the_scoring_id_without_a_broker(tmp_path: Path) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path)
    r = german_credit_record(1)
    assert em.log(request=r["request"], response=r["response"], subscription_id="gc", scoring_id="abc") == "abc"
    generated = em.log(request=r["request"], response=r["response"], subscription_id="gc")
    assert len(generated) == 32
    assert em.stats().queued == 2


def test_an_invalid_record_is_counted_logged_and_not_queued(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path)
    secret = "do-not-log-me"
    with caplog.at_level(logging.WARNING, "stream_logger.emitter"):
        em.log(request={"fields": ["a", "b"], "values": [[secret]]}, response=None, subscription_id="s")
    stats = em.stats()
    assert stats.invalid == 1 and stats.queued == 0
    assert "invalid scoring record" in caplog.text
    assert secret not in caplog.text


def test_a_timestamp_out_of_range_in_utc_is_counted_invalid_not_raised(tmp_path: Path) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path)
    r = german_credit_record(1)
    # An offset of seconds is written in UTC, and this instant is then in year 0.
    timestamp = datetime(1, 1, 1, tzinfo=timezone(timedelta(seconds=30)))
    em.log(request=r["request"], response=r["response"], subscription_id="gc", scoring_timestamp=timestamp)
    assert em.stats().invalid == 1 and em.stats().queued == 0


def test_strict_raises_on_an_invalid_record(tmp_path: Path) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, strict=True)
    with pytest.raises(RecordError):
        em.log(request={"fields": ["a"], "values": [[float("nan"), 1]]}, response=None, subscription_id="s")


def test_the_queued_bytes_are_a_valid_v1_record(tmp_path: Path) -> None:
    em = ThreadedEmitter("t", "127.0.0.1:1", spool_dir=tmp_path, close_timeout_s=0.5)
    scoring_id = em.log(request=REQUEST, response=RESPONSE, subscription_id="s", tags={"env": "test"})
    em.stop()  # the broker is unreachable: the record waits in the spool, as the next emitter will read it
    spool = Spool(tmp_path / "slot-0", max_bytes=1 << 20)
    assert spool.try_open()
    ((key, value),) = [record for segment in spool.ready_segments() for record in spool.read(segment).records]
    spool.close()
    assert key == scoring_id.encode()
    record = decode(value)
    assert record.request.values == REQUEST["values"] and record.tags == {"env": "test"}


@pytest.mark.parametrize("cap", [64 << 10, 1 << 20, 8 << 20, 64 << 20, 1 << 30])
def test_the_two_producers_queues_fit_in_max_buffer_bytes(cap: int, tmp_path: Path) -> None:
    config = Emitter("t", "127.0.0.1:1", max_buffer_bytes=cap, spool_dir=tmp_path).delivery_config
    worst = 0
    for budget in (config.memory_budget_bytes, config.replay_budget_bytes):
        settings = producer_settings(config, budget)
        values = settings["queue.buffering.max.kbytes"] * 1024
        worst += values + settings["queue.buffering.max.messages"] * RECORD_OVERHEAD_BYTES
    assert worst <= cap
    assert config.replay_budget_bytes >= 8 * 1024  # the spool's producer holds a few records


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError):
        Emitter("t", "127.0.0.1:1", compression="brotli")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Emitter("t", "127.0.0.1:1", overflow="panic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Emitter("t", "not a server")


def test_a_closed_threaded_emitter_stays_closed(tmp_path: Path) -> None:
    em = ThreadedEmitter("t", "127.0.0.1:1", spool_dir=tmp_path, close_timeout_s=1)
    em.log(request=REQUEST, response=RESPONSE, subscription_id="s")
    em.close()
    em.close()
    assert em.stats().spool_records == 1  # not delivered, kept on disk for the next emitter
    with pytest.raises(LifecycleError, match="cannot be started again"):
        em.start()


def test_block_waits_then_falls_back_to_drop(tmp_path: Path) -> None:
    em = ThreadedEmitter(
        "t",
        "127.0.0.1:1",
        overflow="block",
        block_fallback="drop",
        block_timeout_s=0.05,
        max_buffer_bytes=3_000,
        spool_dir=tmp_path,
        close_timeout_s=1,
    )
    r = german_credit_record(1)
    for _ in range(6):
        em.log(request=r["request"], response=r["response"], subscription_id="gc")
    stats = em.stats()
    em.close()
    assert stats.dropped > 0
    assert stats.dropped + stats.queued == 6


def test_a_disk_that_refuses_the_spool_costs_a_counted_drop_not_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    em = ThreadedEmitter("t", "127.0.0.1:1", max_buffer_bytes=3_000, spool_dir=tmp_path, close_timeout_s=1)

    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    r = german_credit_record(1)
    monkeypatch.setattr(os, "write", full_disk)
    with caplog.at_level(logging.WARNING, "stream_logger.emitter"):
        for _ in range(6):  # the buffer holds two or three; the others would spill
            em.log(request=r["request"], response=r["response"], subscription_id="gc")
    stats = em.stats()
    monkeypatch.undo()
    em.close()
    assert stats.dropped > 0 and stats.spilled == 0
    assert stats.dropped + stats.queued == 6
    assert "the spool cannot be written" in caplog.text and "No space left on device" in caplog.text


class _RowsThatRaise(list[Any]):
    def __iter__(self) -> Any:
        raise RuntimeError("the caller's object failed")


class _FrameThatRaises:
    columns = ("a",)  # looks like a pandas frame

    def __getattr__(self, name: str) -> Any:
        raise KeyError(name)


class _Unprintable(Exception):
    """An exception whose own message raises when read."""

    def __str__(self) -> str:
        raise ValueError("not even a message")


class _Loud(Exception):
    """An exception with a 20 MB message."""

    def __str__(self) -> str:
        return "x" * 20_000_000


class _RowsThatRaiseThis(list[Any]):
    def __init__(self, exc: Exception) -> None:
        super().__init__([[1]])
        self.exc = exc

    def __iter__(self) -> Any:
        raise self.exc


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ({"fields": ["a"], "values": _RowsThatRaise([[1]])}, "RuntimeError: the caller's object failed"),
        (_FrameThatRaises(), "KeyError"),
        ({"fields": ["a"], "values": _RowsThatRaiseThis(_Unprintable())}, "_Unprintable"),  # its __str__ raises
        ({"fields": ["a"], "values": _RowsThatRaiseThis(_Loud())}, "_Loud: xxx"),  # 20 MB of message, cut short
    ],
    ids=["rows that raise", "a frame that raises", "a message that raises", "a huge message"],
)
def test_an_object_that_raises_when_read_is_an_invalid_record_not_an_exception(
    request_: Any, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path)
    with caplog.at_level(logging.WARNING, "stream_logger.emitter"):
        assert em.log(request=request_, response=None, subscription_id="s", scoring_id="x") == "x"
    assert em.stats().invalid == 1 and em.stats().queued == 0
    assert "invalid scoring record not sent" in caplog.text and reason in caplog.text and len(caplog.text) < 2_000
    strict = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, strict=True)
    with pytest.raises(RecordError, match=re.escape(reason)) as err:
        strict.log(request=request_, response=None, subscription_id="s")
    assert len(str(err.value)) < 1_000


def test_a_huge_invalid_value_from_the_record_itself_is_cut_short_in_the_warning_and_the_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The path of an unknown tag name holds the name; a name of 5 MB must not become a 5 MB line.
    tags = {"k" * 5_000_000: "v"}
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path)
    with caplog.at_level(logging.WARNING, "stream_logger.emitter"):
        em.log(request=REQUEST, response=RESPONSE, subscription_id="s", scoring_id="i" * 5_000_000, tags=tags)
    assert em.stats().invalid == 1
    assert "invalid scoring record not sent" in caplog.text and len(caplog.text) < 2_000
    assert all(len(str(getattr(r, "scoring_id", ""))) < 1_000 for r in caplog.records)
    strict = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, strict=True)
    with pytest.raises(RecordError) as err:
        strict.log(request=REQUEST, response=RESPONSE, subscription_id="s", tags=tags)
    assert len(str(err.value)) < 1_000 and len(err.value.path) < 1_000


class _HugeFrame:
    """A DataFrame of 5 million rows as far as its shape goes; reading a column fails the test."""

    columns = ("a", "b")
    shape = (5_000_000, 2)

    def __getitem__(self, column: str) -> Any:
        raise AssertionError("the frame was converted")


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ({"fields": ["a", "b"], "values": np.broadcast_to(np.float64(0), (5_000_000, 2))}, "5000000 rows"),
        ({"fields": ["a"], "values": np.broadcast_to(np.float64(0), (1, 5_000))}, "5000 values a row"),
        ({"fields": ["a"], "values": np.broadcast_to(np.int64(0), (10_000, 1_000))}, "bytes"),
        ({"fields": ["a"], "values": [np.broadcast_to(np.float64(0), (5_000,))]}, "5000 values a row"),
        ({"fields": ["a", "b"], "values": [[0, 0]] * 5_000_000}, "5000000 rows"),
        ({"fields": ["a", "b"], "values": [(0, 0)] * 5_000_000}, "5000000 rows"),
        ([{"a": 0}] * 5_000_000, "5000000 rows"),
        (_HugeFrame(), "5000000 rows"),
    ],
    ids=["array rows", "array columns", "array cells", "array row", "rows", "tuple rows", "dicts", "frame"],
)
def test_a_huge_block_is_refused_before_it_is_converted(request_: Any, reason: str, tmp_path: Path) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path)
    assert em.log(request=request_, response=None, subscription_id="s", scoring_id="x") == "x"
    assert em.stats().invalid == 1 and em.stats().queued == 0
    strict = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, strict=True)
    with pytest.raises(RecordError, match=reason) as err:
        strict.log(request=request_, response=None, subscription_id="s")
    assert err.value.path == "request.values" or isinstance(request_, _HugeFrame | list)


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("scoring_id", [5, b"abc", uuid.uuid4(), ["x"]], ids=["int", "bytes", "uuid", "list"])
def test_a_scoring_id_that_is_not_a_str_is_refused_and_log_returns_a_str(
    scoring_id: Any, validate: bool, tmp_path: Path
) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, validate=validate)
    assert em.log(request=REQUEST, response=RESPONSE, subscription_id="s", scoring_id=scoring_id) == ""
    assert em.stats().invalid == 1 and em.stats().queued == 0 and em.stats().dropped == 0
    strict = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, strict=True)
    with pytest.raises(RecordError, match="scoring_id: must be a str"):
        strict.log(request=REQUEST, response=RESPONSE, subscription_id="s", scoring_id=scoring_id)


@pytest.mark.parametrize("validate", [True, False])
def test_a_str_subclass_scoring_id_is_queued(validate: bool, tmp_path: Path) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, validate=validate)
    scoring_id = em.log(request=REQUEST, response=RESPONSE, subscription_id="s", scoring_id=np.str_("abc"))
    assert isinstance(scoring_id, str) and scoring_id == "abc"
    assert em.stats().queued == 1


def test_a_naive_timestamp_is_taken_as_utc_counted_and_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    em = Emitter("t", "127.0.0.1:1", spool_dir=tmp_path, overflow="drop", strict=True)
    call = {k: v for k, v in german_credit_record(1).items() if k in ("request", "response", "subscription_id")}
    with caplog.at_level(logging.WARNING, "stream_logger.emitter"):
        for naive in (datetime(2025, 3, 4, 5, 6, 7), "2025-03-04T05:06:07", datetime.now(UTC).replace(tzinfo=None)):
            assert em.log(**call, scoring_timestamp=naive)
        em.log(**call, scoring_timestamp=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert em.stats().naive_timestamps == 3
    assert em.stats().invalid == 0
    assert caplog.text.count("without a timezone was taken as UTC") == 1
    assert caplog.text.count("stats().naive_timestamps") == 1


def test_a_naive_timestamp_is_written_as_the_same_wall_clock_in_utc() -> None:
    call: Any = {k: v for k, v in german_credit_record(1).items() if k in ("request", "response", "subscription_id")}
    naive_call: Any = {**call, "scoring_timestamp": datetime(2025, 3, 4, 5, 6, 7)}
    _, value, naive, _ = encode_call(naive_call, True)
    assert naive
    assert decode(value).scoring_timestamp == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    utc_call: Any = {**call, "scoring_timestamp": datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)}
    assert not encode_call(utc_call, True).naive_timestamp
