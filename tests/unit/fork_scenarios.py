"""An emitter used in a forked child builds a delivery of its own there; the parent's stays the parent's.

Run by ``test_fork.py`` in an interpreter of their own: a test process that has run hundreds of other tests holds
their threads (librdkafka's among them), and forking it is not the shape a server forks in (a gunicorn master with
``--preload`` holds the threads of its own emitters only).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from stream_logger import ThreadedEmitter
from stream_logger.samples import german_credit_record
from stream_logger.spool import Spool
from tests.support import free_ports

_FORK = multiprocessing.get_context("fork")
_TIMEOUT_S = 60


def _log(em: ThreadedEmitter, prefix: str, n: int) -> list[str]:
    calls = [german_credit_record(i) for i in range(n)]
    return [
        em.log(request=c["request"], response=c["response"], subscription_id="gc", scoring_id=f"{prefix}-{i}")
        for i, c in enumerate(calls)
    ]


def _spooled_ids(folder: Path) -> list[str]:
    spool = Spool(folder, max_bytes=1 << 30)
    assert spool.try_open(), f"{folder} still has an owner"
    ids = [key.decode() for segment in spool.ready_segments() for key, _ in spool.read(segment).records]
    spool.close()
    return ids


@pytest.fixture
def emitter(tmp_path: Path) -> Iterator[ThreadedEmitter]:
    """An emitter whose broker is down: what it cannot deliver at close is spooled, where the test can read it."""
    (port,) = free_ports(1)
    em = ThreadedEmitter(
        "t", f"127.0.0.1:{port}", spool_dir=tmp_path / "spool", close_timeout_s=1, delivery_timeout_s=1
    )
    yield em
    em.close()


def _child_logs(em: ThreadedEmitter, n: int, conn: Connection) -> None:
    _log(em, "child", n)
    conn.send(em.stats().dropped)
    # no close(): the child's exit must deliver or spool what it logged


def _fork_and_log(em: ThreadedEmitter, n: int) -> int:
    """Log ``n`` records in a forked child that then exits; how many the child counted dropped."""
    receive, send = _FORK.Pipe()
    child = _FORK.Process(target=_child_logs, args=(em, n, send))
    child.start()
    child.join(_TIMEOUT_S)
    assert child.exitcode == 0
    dropped: int = receive.recv()
    return dropped


def test_a_forked_child_logs_through_a_delivery_and_spool_slot_of_its_own(
    emitter: ThreadedEmitter, tmp_path: Path
) -> None:
    parent_ids = _log(emitter, "parent", 5)  # still queued in the parent's producer at the fork
    assert _fork_and_log(emitter, 20) == 0
    slots = tmp_path / "spool"
    assert sorted(_spooled_ids(slots / "slot-1")) == sorted(f"child-{i}" for i in range(20))
    emitter.close()
    assert emitter.stats().spool_records == 5  # the parent goes on as before: its own records, in its own slot
    assert sorted(_spooled_ids(slots / "slot-0")) == sorted(parent_ids)


def test_a_child_whose_emitter_cannot_start_again_counts_its_records_dropped(
    emitter: ThreadedEmitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stream_logger.shared_spool.MAX_SLOTS", 1)  # the child finds no free slot
    assert _fork_and_log(emitter, 3) == 3
