"""The emitter for synchronous code (WSGI apps, batch scripts, notebooks): the producer runs in a thread.

``log()`` is thread-safe: it builds and encodes the record in the calling thread, then hands the bytes to an
asyncio loop running in a daemon thread. With ``overflow="block"`` it waits up to ``block_timeout_s`` for room
in the memory buffer before falling back to ``block_fallback``. ``close()`` (also called at interpreter exit)
delivers what it can within ``close_timeout_s`` and spools the rest.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self

from .emitter import _EmitterBase
from .errors import ConfigError

__all__ = ["ThreadedEmitter"]


class ThreadedEmitter(_EmitterBase):
    """Same options and methods as :class:`~stream_logger.emitter.Emitter`, without asyncio at the call site.

    Starts on creation (or ``start()``); use ``with ThreadedEmitter(...) as em:`` or call ``close()``.
    """

    def _created(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._start_lock = threading.Lock()
        self.start()

    def start(self) -> None:
        """Start the background thread (done on creation). Calling it again does nothing."""
        with self._start_lock:
            if self._closed:
                raise ConfigError("a closed emitter cannot be started again: create a new one")
            if self._thread is not None:
                return
            ready: Future[None] = Future()
            self._thread = threading.Thread(
                target=self._serve, args=(ready,), name=f"stream-logger-emitter:{self.topic}", daemon=True
            )
            self._thread.start()
            ready.result()
            atexit.register(_close_at_exit, weakref.ref(self))

    def _serve(self, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._pipeline.start())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.close()

    def _call(self, coro: Any, timeout_s: float | None) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything logged so far is acknowledged (or spooled while the broker is down)."""
        if self._closed or self._loop is None:
            return False
        result: bool = self._call(self._pipeline.flush(timeout_s), None)
        return result

    def close(self) -> None:
        """Deliver what can be delivered within ``close_timeout_s``, spool the rest, stop the thread. Idempotent."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        if self._loop is None or self._thread is None:
            return
        try:
            self._call(self._pipeline.stop(), None)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

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
