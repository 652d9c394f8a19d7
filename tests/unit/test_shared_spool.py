"""A spool folder shared by processes: a slot each, and the slots of dead processes adopted, by real processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from stream_logger.shared_spool import SharedSpool, default_spool_dir
from stream_logger.spool import Spool
from tests.support import spool_records


def _tagged(tag: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(f"{tag}-{k.decode()}".encode(), v) for k, v in spool_records(n)]


_SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter, like a server's worker process
_TIMEOUT_S = 30


def _drain(spool: SharedSpool) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for segment in spool.ready_segments():
        out.extend(spool.read(segment).records)
        spool.remove(segment)
    return out


def _spool_and_wait(root: str, tag: str, n: int, conn: Connection) -> None:
    """A worker process: take a slot, spool ``n`` records, say which slot, then wait to be killed or told to go."""
    spool = SharedSpool(root, max_bytes=1 << 20, segment_bytes=300)
    spool.open()
    for key, value in _tagged(tag, n):
        assert spool.append(key, value)
    spool.sync()
    conn.send(str(spool.slot))
    conn.recv()  # "close", unless it is killed first
    spool.close()


def _start_owner(root: Path, tag: str, n: int) -> tuple[multiprocessing.process.BaseProcess, Connection, Path]:
    parent, child = _SPAWN.Pipe()
    proc = _SPAWN.Process(target=_spool_and_wait, args=(str(root), tag, n, child), daemon=True)
    proc.start()
    assert parent.poll(_TIMEOUT_S), "the worker process did not take a slot"
    return proc, parent, Path(parent.recv())


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(_TIMEOUT_S)
    assert proc.exitcode == -signal.SIGKILL


def test_live_processes_take_slots_of_their_own_and_never_adopt_each_other(tmp_path: Path) -> None:
    first, first_conn, first_slot = _start_owner(tmp_path, "a", 5)
    second, second_conn, second_slot = _start_owner(tmp_path, "b", 5)
    try:
        assert first_slot != second_slot and first_slot.parent == second_slot.parent == tmp_path
        third = SharedSpool(tmp_path, max_bytes=1 << 20)
        third.open()  # both owners are alive: nothing to adopt
        assert third.slot not in (first_slot, second_slot)
        assert third.records == 0 and _drain(third) == []
        third.close()
    finally:
        for conn in (first_conn, second_conn):
            conn.send("close")
        for proc in (first, second):
            proc.join(_TIMEOUT_S)


def test_the_slot_of_a_killed_process_is_adopted_by_one_survivor_only_and_then_released(tmp_path: Path) -> None:
    alive = SharedSpool(tmp_path, max_bytes=1 << 20)
    alive.open()
    other = SharedSpool(tmp_path, max_bytes=1 << 20)
    other.open()
    proc, _, dead_slot = _start_owner(tmp_path, "dead", 40)
    _kill(proc)
    adopted = alive.find_orphans()
    assert [s.directory for s in adopted] == [dead_slot]
    alive.adopt(adopted)
    assert other.find_orphans() == []  # the lock is the survivor's now: no segment is read twice
    assert alive.records == 40
    assert _drain(alive) == _tagged("dead", 40)
    assert alive.ready_segments() == []  # empty: released
    assert other.find_orphans() == []  # nothing left in it
    assert not list(dead_slot.glob("*.spool"))
    alive.close()
    other.close()


def test_a_replacement_process_takes_the_freed_slot_with_the_records_in_it(tmp_path: Path) -> None:
    proc, _, slot = _start_owner(tmp_path, "old", 12)
    _kill(proc)
    replacement = SharedSpool(tmp_path, max_bytes=1 << 20)
    replacement.open()
    assert replacement.slot == slot  # the lowest free slot: slots stay as many as the peak of processes
    assert _drain(replacement) == _tagged("old", 12)
    replacement.close()


def test_segments_from_before_slots_are_adopted(tmp_path: Path) -> None:
    legacy = Spool(tmp_path, max_bytes=1 << 20)
    legacy.open()
    for key, value in _tagged("legacy", 7):
        legacy.append(key, value)
    legacy.close()
    spool = SharedSpool(tmp_path, max_bytes=1 << 20)
    spool.open()
    assert spool.slot == tmp_path / "slot-0"
    assert _drain(spool) == _tagged("legacy", 7)
    spool.close()


def test_the_size_cap_is_per_slot(tmp_path: Path) -> None:
    spool = SharedSpool(tmp_path, max_bytes=200)
    spool.open()
    proc, _, _ = _start_owner(tmp_path, "dead", 40)  # its own cap is 1 MiB
    _kill(proc)
    spool.adopt(spool.find_orphans())
    assert spool.records == 40  # more than this spool's cap: adopted slots only shrink
    accepted = sum(spool.append(k, v) for k, v in _tagged("new", 40))
    assert 0 < accepted < 40
    spool.close()


def test_the_default_spool_is_a_per_user_state_folder_not_the_working_folder(tmp_path: Path) -> None:
    assert default_spool_dir("t", {"STREAM_LOGGER_STATE_DIR": str(tmp_path)}) == tmp_path / "spool" / "t"
    assert default_spool_dir("t", {"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "stream-logger" / "spool" / "t"
    home = Path.home() / ".local" / "state" / "stream-logger" / "spool" / "t"
    assert default_spool_dir("t", {}) == home
    assert default_spool_dir("t", {"STREAM_LOGGER_HOME": str(tmp_path)}) == home  # the dev stack's, not the spool's
