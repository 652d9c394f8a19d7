"""The emitter for synchronous code (WSGI apps, batch scripts, notebooks): nothing to await.

``log()`` is thread-safe: it builds and encodes the record in the calling thread and hands the bytes to the
producer, whose own threads send them. With ``overflow="block"`` it waits up to ``block_timeout_s`` for room in the
memory buffer before falling back to ``block_fallback``. ``close()`` (also called at interpreter exit) delivers
what it can within ``close_timeout_s`` (the spool's records too, while the broker is up) and spools the rest.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from types import TracebackType
from typing import Self

from .emitter import Lifecycle, _EmitterBase
from .errors import ConfigError

__all__ = ["ThreadedEmitter"]


class ThreadedEmitter(_EmitterBase):
    """Same options and methods as :class:`~stream_logger.emitter.Emitter`, without asyncio at the call site.

    Starts on creation (or ``start()``); use ``with ThreadedEmitter(...) as em:`` or call ``close()``.
    """

    def _created(self) -> None:
        self._started = False
        self._closed = False
        self._start_lock = threading.Lock()
        self.start()

    def _lifecycle(self) -> Lifecycle:
        return "stopped" if self._closed else "started" if self._started else "new"

    def _stop_now(self) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        self._start_lock = threading.Lock()  # another thread of the parent may have held it at the fork
        super()._after_fork_in_child()

    def start(self) -> None:
        """Start delivering (done on creation). Calling it again does nothing."""
        with self._start_lock:
            if self._closed:
                raise ConfigError("a closed emitter cannot be started again: create a new one")
            if self._started:
                return
            self._pipeline.start()
            self._started = True
            atexit.register(_close_at_exit, weakref.ref(self))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything logged so far is acknowledged (or spooled while the broker cannot be reached)."""
        if self._closed:
            return False
        return self._pipeline.flush(timeout_s)

    def close(self) -> None:
        """Deliver what can be within ``close_timeout_s`` (the spool's records too), spool the rest. Idempotent."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        self._pipeline.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _close_at_exit(ref: weakref.ref[ThreadedEmitter]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter.close()
