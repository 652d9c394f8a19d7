"""A topic's spool folder shared by every process of a service: a slot each, and the slots of dead owners adopted.

Layout: ``<spool_dir>/slot-<n>/`` holds one :class:`~stream_logger.spool.Spool` (its segments and its lock file).
A starting emitter takes the lowest slot whose lock it can take; a lock can be taken only when no live spool holds
it (the kernel releases an ``flock`` when its holder dies, even by SIGKILL), so worker processes that come and go,
with new process ids each time, reuse the same few slots, and a slot's count stays at the peak number of processes.

A slot found unlocked but holding segments belongs to no one: its owner died or stopped during an outage. The
emitter adopts it (keeps its lock, so no other process reads it), sends its segments through its own replay path,
and releases it once empty. Emitters look for such slots when they start and every few seconds after, so the
records of a worker that died are sent by a survivor, or by its replacement, which may simply take the same slot.
Segments directly in ``<spool_dir>``, outside any slot (where an emitter with a single
:class:`~stream_logger.spool.Spool` keeps them), are adopted the same way, so an upgrade leaves none behind.

Slot folders are never removed: removing a lock file races with a process that has just opened it and would then
lock a file no one else sees.

The size cap, ``max_bytes``, is per slot: a process never writes more than that into its own slot, and adopted
slots only shrink. The spool of a service therefore takes at most ``max_bytes`` times its number of processes.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError
from .spool import SegmentContents, Spool

__all__ = ["MAX_SLOTS", "SharedSpool", "default_spool_dir"]

MAX_SLOTS = 1024
"""Slots a spool folder may have: far more processes than one host runs for one topic."""
_SLOT_PREFIX = "slot-"


def default_spool_dir(topic: str, environ: Mapping[str, str] | None = None) -> Path:
    """``<state>/spool/<topic>``, where ``<state>`` is ``$STREAM_LOGGER_STATE_DIR``, else
    ``$XDG_STATE_HOME/stream-logger``, else ``~/.local/state/stream-logger``: per user, never the working folder."""
    env = os.environ if environ is None else environ
    state = env.get("STREAM_LOGGER_STATE_DIR")
    if not state:
        xdg = env.get("XDG_STATE_HOME")
        state = str(Path(xdg) / "stream-logger") if xdg else str(Path.home() / ".local" / "state" / "stream-logger")
    return Path(state).absolute() / "spool" / topic


class SharedSpool:
    """The spool of one process in a folder shared with others: its own slot, plus the slots it adopted.

    Same methods as :class:`~stream_logger.spool.Spool`; records are appended to the own slot, and segments are
    read and removed from whichever slot they are in. Not thread-safe, like a spool.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int = 4 << 20) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ConfigError("spool sizes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._own: Spool | None = None
        self._adopted: dict[Path, Spool] = {}  # slot folder -> its spool, lock held

    @property
    def slot(self) -> Path | None:
        """The folder of this process's own slot, once open."""
        return None if self._own is None else self._own.directory

    def open(self) -> None:
        """Take the lowest free slot, then adopt the slots whose owner is gone."""
        for n in range(MAX_SLOTS):
            spool = self._spool(self.directory / f"{_SLOT_PREFIX}{n}")
            if spool.try_open():
                self._own = spool
                break
        else:
            raise ConfigError(f"spool folder {self.directory}: all {MAX_SLOTS} slots are in use")
        self.adopt(self.find_orphans())

    def find_orphans(self) -> list[Spool]:
        """The slots holding records with no live owner, opened (their locks taken) and not yet adopted."""
        candidates = [self.directory]  # an emitter with a single Spool keeps its segments here
        with contextlib.suppress(FileNotFoundError):
            candidates += sorted(p for p in self.directory.iterdir() if p.name.startswith(_SLOT_PREFIX))
        found: list[Spool] = []
        for folder in candidates:
            if folder == self.slot or folder in self._adopted or not folder.is_dir():
                continue
            spool = self._spool(folder)
            if not spool.try_open():  # a live owner
                continue
            if spool.has_pending:
                found.append(spool)
            else:
                spool.close()
        return found

    def adopt(self, spools: list[Spool]) -> None:
        """Take over spools from :meth:`find_orphans`: their segments are read from here on."""
        for spool in spools:
            self._adopted[spool.directory] = spool

    def close(self) -> None:
        """Close the own slot and release the adopted ones. Safe to call twice."""
        for spool in self._adopted.values():
            spool.close()
        self._adopted.clear()
        if self._own is not None:
            self._own.close()

    def release_after_fork(self) -> None:
        """In a forked child: drop the descriptors inherited from the parent, which still owns these slots."""
        for spool in self._spools():
            spool.release_after_fork()

    @property
    def has_pending(self) -> bool:
        return any(spool.has_pending for spool in self._spools())

    @property
    def bytes(self) -> int:
        return sum(spool.bytes for spool in self._spools())

    @property
    def records(self) -> int:
        return sum(spool.records for spool in self._spools())

    @property
    def torn(self) -> int:
        return sum(spool.torn for spool in self._spools())

    def append(self, key: builtins.bytes, value: builtins.bytes) -> bool:
        """Write one record to the own slot (:meth:`Spool.append`)."""
        assert self._own is not None, "open() first"
        return self._own.append(key, value)

    def sync(self) -> None:
        if self._own is not None:
            self._own.sync()

    def ready_segments(self) -> list[Path]:
        """Every finished segment, the adopted slots' first; an adopted slot found empty is released here."""
        segments: list[Path] = []
        for folder, spool in list(self._adopted.items()):
            ready = spool.ready_segments()
            if not ready:
                spool.close()
                del self._adopted[folder]
            segments += ready
        if self._own is not None:
            segments += self._own.ready_segments()
        return segments

    def read(self, path: Path) -> SegmentContents:
        return self._holder(path).read(path)

    def remove(self, path: Path) -> None:
        self._holder(path).remove(path)

    def _holder(self, segment: Path) -> Spool:
        if self._own is not None and segment.parent == self._own.directory:
            return self._own
        return self._adopted[segment.parent]

    def _spools(self) -> list[Spool]:
        own = [] if self._own is None else [self._own]
        return own + list(self._adopted.values())

    def _spool(self, folder: Path) -> Spool:
        return Spool(folder, max_bytes=self.max_bytes, segment_bytes=self._segment_bytes)
