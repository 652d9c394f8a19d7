"""The emitter's disk spool: where records wait while the broker is down or the memory buffer is full.

A spool is a folder of append-only segment files ``seg-<sequence>.spool``, read back oldest first. Each record is a
frame: a 12-byte header (key length, value length, CRC-32 of key and value, all big-endian) then the key and the
value. A segment is only appended to by the process that created it; on opening, a spool always starts a new
segment, so segments left by an earlier process are read-only.

Durability (the fsync policy): every frame is written to the operating system at once (one ``write`` call, no
user-space buffering), so a crash or kill of the process loses nothing that was accepted; the file is fsynced when
a segment is closed, when the spool is closed, and by :meth:`Spool.sync` (the emitter calls it about once a second).
A machine crash can therefore lose at most the last second of spooled records. A frame torn by a crash (short, or
with a wrong CRC) ends the reading of its segment; it is skipped and counted, never sent.

A spool is not thread-safe: its owner serialises calls. A lock file (``flock``) keeps two spools, in one process or
several, from sharing a folder; :mod:`stream_logger.shared_spool` gives each process a folder of its own. The folder
is ``0700`` and its files ``0600`` whatever the umask (records hold personal features); opening a folder of ours
with wider modes narrows them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["FRAME_HEADER_BYTES", "SegmentContents", "Spool"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">III")
FRAME_HEADER_BYTES = _HEADER.size
_MAX_PART_BYTES = 256 * 1024 * 1024  # larger lengths can only come from a corrupt header
_PREFIX, _SUFFIX = "seg-", ".spool"
_DIR_MODE, _FILE_MODE = 0o700, 0o600  # owner only, whatever the umask: records hold personal features


@dataclass(slots=True)
class SegmentContents:
    """What :meth:`Spool.read` found in one segment: its records in order, and how many frames were torn."""

    records: list[tuple[bytes, bytes]]
    torn: int


class Spool:
    """A size-capped, append-only, crash-safe queue of (key, value) records on local disk."""

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int = 4 << 20) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ConfigError("spool sizes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes)
        self._closed: list[Path] = []  # finished segments, oldest first
        self._sizes: dict[Path, int] = {}
        self._fd: int | None = None
        self._current: Path | None = None
        self._current_bytes = 0
        self._current_records = 0
        self._next_seq = 0
        self._dirty = False
        self._lock_fd: int | None = None
        self.bytes = 0
        """Bytes on disk, in every segment not yet removed."""
        self.records = 0
        """Records waiting, in every segment not yet removed (a torn frame counts as one until read)."""
        self.torn = 0
        """Frames found torn (and skipped) since this spool was opened."""
        self._counts: dict[Path, int] = {}

    def open(self) -> None:
        """Create the folder if needed, take its lock, and find the segments an earlier process left.

        Raises :class:`~stream_logger.errors.ConfigError` when another spool holds the folder.
        """
        if not self.try_open():
            raise ConfigError(f"spool folder {self.directory} is in use by another emitter")

    def try_open(self) -> bool:
        """:meth:`open`, or ``False`` (nothing opened) when another spool, in any process, holds the folder.

        The lock is an ``flock`` on the folder's lock file: the kernel releases it when its holder dies, even by
        SIGKILL, so a folder whose lock can be taken has no live owner.
        """
        self.directory.mkdir(_DIR_MODE, parents=True, exist_ok=True)
        _owner_only(self.directory, os.stat(self.directory), _DIR_MODE)
        lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, _FILE_MODE)
        _owner_only(self.directory / "lock", os.fstat(lock_fd), _FILE_MODE, lock_fd)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            return False
        self._lock_fd = lock_fd
        found = sorted(self.directory.glob(f"{_PREFIX}*{_SUFFIX}"))
        for path in found:
            stat = path.stat()
            _owner_only(path, stat, _FILE_MODE)
            size = stat.st_size
            if size == 0:
                path.unlink()
                continue
            self._closed.append(path)
            self._sizes[path] = size
            self._counts[path] = _count_frames(path, size)
            self.bytes += size
            self.records += self._counts[path]
        if found:
            self._next_seq = int(found[-1].name[len(_PREFIX) : -len(_SUFFIX)]) + 1
        if self._closed:
            log.info("spool %s holds %d bytes from an earlier run", self.directory, self.bytes)
        return True

    def close(self) -> None:
        """Finish the current segment (fsynced) and release the folder. Safe to call twice."""
        self._finish_current()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def release_after_fork(self) -> None:
        """In a forked child: close the descriptors inherited from the parent, which goes on owning the folder.

        Nothing is synced, written or removed, and the lock stays the parent's (``flock`` belongs to the open file,
        which the parent still holds; closing the child's copy only stops the child from keeping it alive).
        """
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None
        self._current = None

    @property
    def has_pending(self) -> bool:
        """Whether any record waits in the spool."""
        return bool(self._closed) or self._current_records > 0

    def append(self, key: bytes, value: bytes) -> bool:
        """Write one record; ``False`` (nothing written) when the spool is full.

        Raises :class:`OSError` when the disk refuses the write (full, failing): the segment is then cut back to
        its last whole frame and finished, so the records before it stay readable, and the next record starts a
        new segment.
        """
        size = FRAME_HEADER_BYTES + len(key) + len(value)
        if self.bytes + size > self.max_bytes:
            return False
        if self._fd is None or (self._current_bytes + size > self.segment_bytes and self._current_records):
            self._finish_current()
            self._start_segment()
        assert self._fd is not None
        frame = _HEADER.pack(len(key), len(value), zlib.crc32(value, zlib.crc32(key))) + key + value
        try:
            written = os.write(self._fd, frame)
            if written != size:
                raise OSError(errno.ENOSPC, f"wrote {written} of {size} bytes to {self._current}")
        except OSError:
            self._abandon_current()
            raise
        self._current_bytes += size
        self._current_records += 1
        self.bytes += size
        self.records += 1
        self._dirty = True
        return True

    def sync(self) -> None:
        """fsync the segment being written, if anything was written since the last sync."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    def ready_segments(self) -> list[Path]:
        """Close the segment being written (when it holds records) and list every finished one, oldest first."""
        if self._current_records:
            self._finish_current()
        return list(self._closed)

    def read(self, path: Path) -> SegmentContents:
        """The records of a finished segment; a torn frame ends the segment and is counted."""
        data = path.read_bytes()
        records: list[tuple[bytes, bytes]] = []
        pos, end, torn = 0, len(data), 0
        while pos < end:
            if end - pos < FRAME_HEADER_BYTES:
                torn = 1
                break
            key_len, value_len, crc = _HEADER.unpack_from(data, pos)
            start = pos + FRAME_HEADER_BYTES
            stop = start + key_len + value_len
            if key_len > _MAX_PART_BYTES or value_len > _MAX_PART_BYTES or stop > end:
                torn = 1
                break
            key, value = data[start : start + key_len], data[start + key_len : stop]
            if zlib.crc32(value, zlib.crc32(key)) != crc:
                torn = 1
                break
            records.append((key, value))
            pos = stop
        if torn:
            self.torn += 1
            log.warning(
                "spool segment %s: torn frame at byte %d of %d skipped (%d records before it are kept)",
                path.name,
                pos,
                end,
                len(records),
            )
        return SegmentContents(records, torn)

    def remove(self, path: Path) -> None:
        """Delete a finished segment once all its records are acknowledged."""
        self._closed.remove(path)
        self.bytes -= self._sizes.pop(path)
        self.records -= self._counts.pop(path)
        path.unlink(missing_ok=True)

    def _start_segment(self) -> None:
        path = self.directory / f"{_PREFIX}{self._next_seq:020d}{_SUFFIX}"
        self._next_seq += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, _FILE_MODE)
        os.fchmod(self._fd, _FILE_MODE)  # the umask may have taken the owner's bits too
        self._current = path
        self._current_bytes = 0
        self._current_records = 0

    def _abandon_current(self) -> None:
        """After a failed write: cut the segment back to its whole frames and finish it (errors ignored: a frame
        left torn at its end is skipped and counted when read)."""
        assert self._fd is not None
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._current_bytes)
        with contextlib.suppress(OSError):
            self._finish_current()

    def _finish_current(self) -> None:
        """fsync and close the segment being written; it is listed for reading even when the fsync fails."""
        if self._fd is None or self._current is None:
            return
        fd, path = self._fd, self._current
        self._fd, self._current = None, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
            self._dirty = False
            if self._current_records:
                self._closed.append(path)
                self._sizes[path] = self._current_bytes
                self._counts[path] = self._current_records
            else:
                path.unlink(missing_ok=True)
            self._current_bytes = self._current_records = 0


def _owner_only(path: Path, stat: os.stat_result, mode: int, fd: int | None = None) -> None:
    """Give ``path`` exactly ``mode`` when it is ours; warn when it is someone else's and open to others."""
    if stat.st_mode & 0o777 == mode:
        return
    if stat.st_uid != os.geteuid():
        if stat.st_mode & 0o077:
            log.warning("spool %s belongs to another user and others can read it; its records hold personal data", path)
        return
    if fd is None:
        os.chmod(path, mode)
    else:
        os.fchmod(fd, mode)


def _count_frames(path: Path, size: int) -> int:
    """How many frames a segment holds, reading only their headers (a torn tail counts as one)."""
    count, pos = 0, 0
    with path.open("rb") as f:
        while pos < size:
            header = f.read(FRAME_HEADER_BYTES)
            count += 1
            if len(header) < FRAME_HEADER_BYTES:
                break
            key_len, value_len, _ = _HEADER.unpack(header)
            pos += FRAME_HEADER_BYTES + key_len + value_len
            f.seek(pos)
    return count
