"""The disk spool: order, size cap, crash safety, hand-over between processes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from stream_logger.errors import ConfigError
from stream_logger.spool import FRAME_HEADER_BYTES, Spool
from tests.support import spool_records


def _drain(spool: Spool) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for segment in spool.ready_segments():
        out.extend(spool.read(segment).records)
        spool.remove(segment)
    return out


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    spool.open()
    records = spool_records(50)
    for key, value in records:
        assert spool.append(key, value)
    assert spool.records == 50
    assert len(spool.ready_segments()) > 1
    assert _drain(spool) == records
    assert not spool.has_pending
    assert spool.bytes == 0 and spool.records == 0
    assert not list(tmp_path.glob("*.spool"))
    spool.close()


def test_a_full_spool_refuses_records(tmp_path: Path) -> None:
    record_bytes = FRAME_HEADER_BYTES + len(b"id-0") + len(b'{"n":0}')
    spool = Spool(tmp_path, max_bytes=record_bytes * 3)
    spool.open()
    accepted = [spool.append(k, v) for k, v in spool_records(5)]
    assert accepted == [True, True, True, False, False]
    spool.close()


def test_a_new_spool_on_the_same_folder_finds_what_the_old_one_left(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.open()
    for key, value in spool_records(10):
        first.append(key, value)
    first.close()
    second = Spool(tmp_path, max_bytes=1 << 20)
    second.open()
    assert second.has_pending and second.records == 10
    second.append(b"late", b"{}")
    assert _drain(second) == [*spool_records(10), (b"late", b"{}")]
    second.close()


def test_a_torn_last_frame_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    for key, value in spool_records(3):
        spool.append(key, value)
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    data = segment.read_bytes()
    segment.write_bytes(data[:-4])  # a crash in the middle of the last write
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    reopened.open()
    assert _drain(reopened) == spool_records(2)
    assert reopened.torn == 1
    reopened.close()


def test_a_corrupt_frame_is_not_sent(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    for key, value in spool_records(3):
        spool.append(key, value)
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    data = bytearray(segment.read_bytes())
    data[-2] ^= 0xFF  # the last record's value, flipped
    segment.write_bytes(bytes(data))
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    reopened.open()
    assert _drain(reopened) == spool_records(2)
    assert reopened.torn == 1
    reopened.close()


@pytest.mark.parametrize("failure", ["short write", "error"])
def test_a_failed_write_keeps_the_records_before_it_and_the_spool_goes_on(
    failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    records = spool_records(6)
    for key, value in records[:3]:
        assert spool.append(key, value)
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if failure == "short write":  # the disk filled in the middle of the frame
            return real_write(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        spool.append(b"refused", b"{}")
    monkeypatch.undo()
    for key, value in records[3:]:
        assert spool.append(key, value)
    assert spool.records == 6
    assert _drain(spool) == records
    assert spool.torn == 0
    spool.close()


def test_two_spools_cannot_share_a_folder(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.open()
    with pytest.raises(ConfigError, match="in use"):
        Spool(tmp_path, max_bytes=1 << 20).open()
    first.close()
    second = Spool(tmp_path, max_bytes=1 << 20)
    second.open()
    second.close()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_spool_is_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    # Records hold personal features (age, sex): no other user may list or read them.
    folder = tmp_path / "spool" / "topic"
    old = os.umask(umask)
    try:
        spool = Spool(folder, max_bytes=1 << 20, segment_bytes=200)
        spool.open()
        for key, value in spool_records(20):
            spool.append(key, value)
        segments = spool.ready_segments()
        spool.close()
    finally:
        os.umask(old)
    assert _mode(folder) == 0o700
    assert len(segments) > 1 and {_mode(segment) for segment in segments} == {0o600}
    assert _mode(folder / "lock") == 0o600


def test_opening_a_spool_folder_left_open_to_others_makes_it_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    spool = Spool(folder, max_bytes=1 << 20)
    spool.open()
    spool.append(b"k", b"v")
    spool.close()
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    again = Spool(folder, max_bytes=1 << 20)
    again.open()
    assert _mode(folder) == 0o700
    assert {_mode(path) for path in folder.iterdir()} == {0o600}
    assert _drain(again) == [(b"k", b"v")]
    again.close()
