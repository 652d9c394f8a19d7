"""The emitter against the real broker: byte-for-byte delivery, spilling through an outage and a restart, drops."""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import os
import random
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError

from stream_logger import Emitter, EmitterStats, PayloadRecord, ThreadedEmitter
from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.encoding import encode
from stream_logger.records import decode
from stream_logger.samples import german_credit_record
from stream_logger.scoring_call import build_record
from stream_logger.topics import create_topic
from tests.support import consume_all, scoring_call, unique_name

pytestmark = pytest.mark.integration

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: the broker is "down"


def _call(i: int) -> dict[str, Any]:
    when = datetime(2025, 3, 1, 12, 0, i % 60, tzinfo=UTC)
    return {**scoring_call(i, f"call-{i:06d}", when), "response_time_ms": 3.5}


async def test_records_arrive_byte_for_byte(settings: Settings, topic: str, tmp_path: Path) -> None:
    calls = [_call(i) for i in range(200)]
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path) as em:
        ids = [em.log(**c) for c in calls]
        assert await em.flush(30)
        stats = em.stats()
    assert ids == [c["scoring_id"] for c in calls]
    assert stats.acknowledged == 200 and stats.spilled == 0 and stats.dropped == 0
    got = dict(await consume_all(settings, topic, 200))
    assert len(got) == 200
    for c in calls:
        assert got[c["scoring_id"].encode()] == encode(build_record(**c))


async def test_payload_records_keep_openscale_meaning(settings: Settings, topic: str, tmp_path: Path) -> None:
    r = german_credit_record(7)
    records = [PayloadRecord(request=r["request"], response=r["response"], response_time=12)]
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path) as em:
        (scoring_id,) = em.store(records=records, subscription_id="german-credit")
        await em.flush(30)
    ((key, value),) = await consume_all(settings, topic, 1)
    record = decode(value)
    assert key == scoring_id.encode() == record.scoring_id.encode() and len(scoring_id) == 32
    assert record.response_time_ms == 12
    assert record.scoring_timestamp.tzinfo is not None
    assert abs((datetime.now(UTC) - record.scoring_timestamp).total_seconds()) < 60


async def test_an_outage_and_a_restart_lose_nothing(settings: Settings, topic: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    # The service runs while the broker cannot be reached: every call is answered, every record spilled.
    async with Emitter(topic, UNREACHABLE, spool_dir=spool, close_timeout_s=2) as down:
        ids = [down.log(**_call(i)) for i in range(300)]
        await down.flush(5)
    stats = down.stats()
    assert stats.spilled == 300 and stats.acknowledged == 0 and stats.spool_records == 300
    # The service restarts with the broker back: the new emitter sends what the old one spooled, then its own.
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=spool) as up:
        ids += [up.log(**_call(i)) for i in range(300, 400)]
        assert await up.flush(60)
        after = up.stats()
    assert after.spool_records == 0 and after.spool_bytes == 0
    assert not list(spool.rglob("*.spool"))
    got = await consume_all(settings, topic, 400)
    assert {k.decode() for k, _ in got} == set(ids)


def test_a_service_killed_during_an_outage_loses_nothing_it_spooled(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    """SIGKILL, not a clean stop: no close(), no atexit. The next process on the same spool sends every record."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from stream_logger import ThreadedEmitter
        from stream_logger.samples import german_credit_record
        em = ThreadedEmitter({topic!r}, {UNREACHABLE!r}, spool_dir={str(tmp_path)!r})
        calls = [german_credit_record(i) for i in range(300)]
        ids = [em.log(request=c["request"], response=c["response"], subscription_id="gc") for c in calls]
        deadline = time.monotonic() + 30
        while em.stats().spool_records < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(" ".join(ids), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )
    assert killed.returncode == -9, killed.stderr
    ids = killed.stdout.split()
    assert len(ids) == 300

    async def restart() -> tuple[EmitterStats, list[tuple[bytes, bytes]]]:
        async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path) as em:
            assert await em.flush(60)
            stats = em.stats()
        return stats, await consume_all(settings, topic, 300)

    stats, got = asyncio.run(restart())
    assert stats.acknowledged == 300 and stats.torn == 0 and stats.spool_records == 0
    assert {k.decode() for k, _ in got} == set(ids)


async def test_a_record_the_broker_refuses_is_dropped_and_the_rest_flow(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    blob = base64.b64encode(random.Random(7).randbytes(3 << 20)).decode()  # does not compress below 1 MiB
    huge = encode(build_record(**{**_call(0), "request": {"fields": ["blob"], "values": [[blob]]}}))
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path) as em:
        em.log_encoded("call-000000", huge)  # larger than the broker's message.max.bytes (1 MiB by default)
        ids = [em.log(**_call(i)) for i in range(1, 51)]
        assert await em.flush(30)
        stats = em.stats()
    assert stats.dropped == 1 and stats.spilled == 0 and stats.spool_records == 0
    assert stats.acknowledged == 50
    got = await consume_all(settings, topic, 50)
    assert {k.decode() for k, _ in got} == set(ids)


async def test_a_full_buffer_spills_and_new_records_do_not_queue_behind_the_spool(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path, max_buffer_bytes=64_000) as em:
        ids = [em.log(**_call(i)) for i in range(1000)]  # a burst far beyond 64 kB: most of it spills
        burst = em.stats()
        memory_path = em._delivery._memory_producer  # no public count tells the memory path's queue apart
        assert memory_path is not None
        for _ in range(300):  # the memory path drains first; the spool goes 8 kB a round trip
            if len(memory_path) == 0:  # (acknowledged >= burst.sent may count the spool's records instead)
                break
            await asyncio.sleep(0.1)
        ids += [em.log(**_call(i)) for i in range(1000, 1020)]
        after = em.stats()
        assert await em.flush(120)
        final = em.stats()
    assert burst.spilled > 500 and after.spool_records > 0  # the spool was still being replayed ...
    assert after.spilled == burst.spilled  # ... yet the new records went straight to the producer
    assert final.spool_records == 0 and final.dropped == 0 and final.acknowledged >= 1020
    got = await consume_all(settings, topic, 1020)
    assert {k.decode() for k, _ in got} == set(ids)


async def test_a_spooled_record_larger_than_the_replay_budget_still_goes(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    big = _call(0)
    big["request"] = {"fields": ["blob"], "values": [["x" * 20_000]]}  # the spool's producer holds < 10 kB
    options: dict[str, Any] = {"spool_dir": tmp_path, "max_buffer_bytes": 80_000, "close_timeout_s": 1}
    async with Emitter(topic, UNREACHABLE, **options) as down:
        ids = [down.log(**big)] + [down.log(**_call(i)) for i in range(1, 30)]
    assert down.stats().spool_records == 30
    async with Emitter(topic, settings.bootstrap_servers, **options) as up:
        assert await up.flush(60)
        stats = up.stats()
    assert stats.spool_records == 0 and stats.dropped == 0
    got = await consume_all(settings, topic, 30)
    assert {k.decode() for k, _ in got} == set(ids)


def test_a_spooled_record_too_large_to_replay_is_acknowledged_before_its_segment_goes(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    """The record is last in its segment, and records linger a second before they are sent: the process is killed
    the moment the segment is removed, so a record not yet acknowledged then would be lost."""
    options: dict[str, Any] = {"spool_dir": str(tmp_path), "max_buffer_bytes": 80_000, "close_timeout_s": 1}
    calls = [_call(i) for i in range(30)]
    calls[-1]["request"] = {"fields": ["blob"], "values": [["x" * 20_000]]}  # the spool's producer holds < 10 kB

    async def spill() -> None:
        async with Emitter(topic, UNREACHABLE, **options) as down:
            for call in calls:
                down.log(**call)
        assert down.stats().spool_records == 30

    asyncio.run(spill())
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from pathlib import Path
        from stream_logger import ThreadedEmitter

        em = ThreadedEmitter({topic!r}, {settings.bootstrap_servers!r}, linger_ms=1000, **{options!r})
        deadline = time.monotonic() + 60
        while list(Path({str(tmp_path)!r}).rglob("*.spool")) and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGKILL)  # at once: what librdkafka still holds is lost
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], timeout=120, env=os.environ.copy())
    assert killed.returncode == -9
    got = asyncio.run(consume_all(settings, topic, 30))
    assert {k.decode() for k, _ in got} == {c["scoring_id"] for c in calls}


async def test_a_fatal_producer_error_replaces_the_producer_and_loses_nothing(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    """librdkafka reports a fatal error (say, the idempotent producer's sequence broken) and that producer can go
    on no more: what it holds is spilled, a new producer takes over, and every record arrives."""
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path, linger_ms=2000) as em:
        ids = [em.log(**_call(i)) for i in range(100)]  # still lingering in librdkafka's queue
        # What librdkafka's error callback would deliver; the real thing cannot be caused on demand.
        em._delivery._on_error(KafkaError(KafkaError._FATAL, "injected by the test", fatal=True))
        for _ in range(100):
            if em.stats().spilled >= 100:  # the failed producer's records, purged into the spool
                break
            await asyncio.sleep(0.05)
        assert em.stats().spilled >= 100
        ids += [em.log(**_call(i)) for i in range(100, 200)]
        assert await em.flush(60)  # the broker is probed, found up, and the spool replayed
        stats = em.stats()
    assert stats.spilled >= 100 and stats.dropped == 0 and stats.spool_records == 0
    assert stats.acknowledged >= 200
    got = await consume_all(settings, topic, 200)
    assert {k.decode() for k, _ in got} == set(ids)


async def test_an_error_in_the_emitters_thread_is_logged_and_the_thread_goes_on(
    settings: Settings, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path) as em:
        spool = em._delivery._spool  # the disk fault is injected there
        assert spool is not None
        real_sync, syncs = spool.sync, []

        def failing_sync() -> None:  # the thread syncs the spool every second; the first time, the disk fails
            syncs.append(1)
            if len(syncs) == 1:
                raise OSError(errno.EIO, "Input/output error")
            real_sync()

        monkeypatch.setattr(spool, "sync", failing_sync)
        with caplog.at_level(logging.ERROR, "stream_logger.emitter"):
            ids = [em.log(**_call(i)) for i in range(50)]
            for _ in range(100):
                if len(syncs) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert len(syncs) >= 2  # the thread synced again after the failure
            ids += [em.log(**_call(i)) for i in range(50, 100)]
            assert await em.flush(30)
    assert "the emitter's thread hit an error" in caplog.text and "Input/output error" in caplog.text
    got = await consume_all(settings, topic, 100)
    assert {k.decode() for k, _ in got} == set(ids)


async def test_drop_counts_what_it_drops(tmp_path: Path) -> None:
    async with Emitter(
        "never-reached", UNREACHABLE, overflow="drop", max_buffer_bytes=20_000, spool_dir=tmp_path, close_timeout_s=1
    ) as em:
        for i in range(100):
            em.log(**_call(i))
        stats = em.stats()
    assert stats.dropped > 0
    assert stats.dropped + stats.queued == 100
    final = em.stats()
    assert final.dropped == 100 and final.acknowledged == 0  # nothing silently gone: all counted as dropped


def test_the_threaded_emitter_flushes_at_exit(settings: Settings, topic: str, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from stream_logger import ThreadedEmitter
        from stream_logger.samples import german_credit_record
        em = ThreadedEmitter({topic!r}, {settings.bootstrap_servers!r}, spool_dir={str(tmp_path)!r})
        for i in range(250):
            r = german_credit_record(i)
            em.log(request=r["request"], response=r["response"], subscription_id="german-credit")
        # no close(): interpreter exit must deliver
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=os.environ.copy())
    got = asyncio.run(consume_all(settings, topic, 250))
    assert len({k for k, _ in got}) == 250


def test_closing_delivers_what_a_burst_spilled_when_the_broker_is_up(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    """A batch script logs faster than the broker takes, so most records spill; closing sends them too, not only
    what waits in memory, and leaves the spool empty."""
    options: dict[str, Any] = {"max_buffer_bytes": 64_000, "close_timeout_s": 60}  # a loaded CI machine is slow
    em = ThreadedEmitter(topic, settings.bootstrap_servers, spool_dir=tmp_path, **options)
    ids = [em.log(**_call(i)) for i in range(1000)]
    burst = em.stats()
    em.close()
    final = em.stats()
    assert burst.spilled > 500
    assert final.spool_records == 0 and final.dropped == 0 and final.acknowledged >= 1000
    got = asyncio.run(consume_all(settings, topic, 1000))
    assert {k.decode() for k, _ in got} == set(ids)


def test_stopping_soon_after_the_broker_returns_delivers_the_spool(
    settings: Settings, private_broker: DevStack, tmp_path: Path
) -> None:
    """The broker comes back while the emitter waits out its back-off after failed probes: a graceful stop then
    probes again at once and delivers the spool, rather than trusting the last probe and leaving it behind."""
    private = Settings(private_broker.bootstrap_servers, settings.dsn)
    topic = unique_name("t")
    asyncio.run(create_topic(private.bootstrap_servers, topic, partitions=1))
    private_broker.kafka.stop()
    em = ThreadedEmitter(topic, private.bootstrap_servers, spool_dir=tmp_path, close_timeout_s=60)
    ids = [em.log(**_call(i)) for i in range(50)]
    deadline = time.monotonic() + 30
    while em.stats().spool_records < 50:
        assert time.monotonic() < deadline, em.stats()
        time.sleep(0.05)
    time.sleep(12)  # five failed probes: the back-off between probes grows to seconds
    private_broker.kafka.wait_ready(private_broker.kafka.start())
    em.close()
    assert em.stats().spool_records == 0
    got = asyncio.run(consume_all(private, topic, 50))
    assert sorted(k.decode() for k, _ in got) == sorted(ids)


def test_emit_names_the_bad_lines(settings: Settings, topic: str, tmp_path: Path) -> None:
    lines = [orjson.dumps(german_credit_record(i)) for i in range(5)]
    lines.insert(1, b'{"schema_version": 1}')
    lines.append(b"not json")
    label = {"schema_version": 1, "kind": "feedback", "feedback_id": "fb-0", "subscription_id": "german-credit"}
    label |= {"labelled_at": "2025-06-01T00:00:00Z", "scoring_id": german_credit_record(0)["scoring_id"]}
    lines += [orjson.dumps({**label, "label": "Risk"}), orjson.dumps(label)]  # a label, and one without its label
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_logger",
            "emit",
            "--topic",
            topic,
            "--file",
            str(path),
            "--bootstrap-servers",
            settings.bootstrap_servers,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "sent 6, invalid 3, undelivered 0" in result.stdout
    assert "invalid lines: 2, 7, 9" in result.stderr
    assert "line 9: label: required with scoring_id" in result.stderr
