"""The emitter for synchronous code (WSGI apps, batch scripts, notebooks): nothing to await.

``log()`` is thread-safe: it builds and encodes the record in the calling thread and hands the bytes to the
producer, whose own threads send them. With ``overflow="block"`` it waits up to ``block_timeout_s`` for room in the
memory buffer before falling back to ``block_fallback``. ``close()`` (also called at interpreter exit) delivers
what it can within ``close_timeout_s`` (the spool's records too, while the broker is up) and spools the rest.
"""

from __future__ import annotations

import atexit
import weakref
from types import TracebackType
from typing import Self

from .emitter import EmitterBase
from .lifecycle import State

__all__ = ["ThreadedEmitter"]


class ThreadedEmitter(EmitterBase):
    """Same options and methods as :class:`~stream_logger.emitter.Emitter`, without asyncio at the call site.

    Starts on creation (or ``start()``); use ``with ThreadedEmitter(...) as em:`` or call ``stop()`` (or its other
    name, ``close()``).
    """

    def _created(self) -> None:
        self.start()

    def start(self) -> None:
        """Start delivering (done on creation). Calling it again does nothing; after :meth:`stop` it raises
        :class:`~stream_logger.errors.LifecycleError`: create a new emitter."""
        if self._start_delivery():
            atexit.register(_close_at_exit, weakref.ref(self))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything logged so far is acknowledged (or spooled while the broker cannot be reached)."""
        if self._lifecycle.state in (State.STOPPING, State.STOPPED):
            return False
        return self._delivery.flush(timeout_s)

    def stop(self) -> None:
        """Deliver what can be within ``close_timeout_s`` (the spool's records too), spool the rest. Idempotent."""
        self._stop_delivery()

    close = stop

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _close_at_exit(ref: weakref.ref[ThreadedEmitter]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter.stop()
