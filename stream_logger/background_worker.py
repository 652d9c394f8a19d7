"""A worker in the calling process: a :class:`~stream_logger.worker.Worker` on a thread of its own, with an event
loop of its own, for a notebook or a script that wants what it stores written without a second terminal (the
OpenScale-style client's in-process worker).

::

    with BackgroundWorker(WorkerConfig(topics=("scoring",), group_id="notebook", schema="datamart")) as worker:
        ...                                  # store records through an emitter
        worker.wait_until_written(timeout_s=60)

:meth:`BackgroundWorker.wait_until_written` reads the topics' end offsets, then waits until the datamart's
``consumer_offsets`` of the worker's group reach them: that is, until everything the topics held at the call is
written (as rows or dead letters), by this worker or another member of its group. The thread is a daemon, so a
forgotten worker never keeps the interpreter from exiting; :meth:`stop` runs at interpreter exit too.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import time
import weakref
from types import TracebackType
from typing import Self

from . import datamart
from .config import Settings
from .errors import CatchUpTimeout, FatalError, describe
from .identifiers import quote_ident
from .kafka_clients import end_offsets
from .lifecycle import Lifecycle, State
from .worker import Worker
from .worker_config import WorkerConfig

__all__ = ["BackgroundWorker"]

_POLL_INTERVAL_S = 0.1
_RESULT_GRACE_S = 15.0  # beyond the caller's timeout: reading the end offsets or connecting may take this long


class BackgroundWorker:
    """A :class:`~stream_logger.worker.Worker` running on a daemon thread until :meth:`stop` (or interpreter exit).

    ``start()``/``stop()`` follow :mod:`stream_logger.lifecycle`; ``with BackgroundWorker(...) as w:`` starts and
    stops it. A worker that fails (bad credentials, no datamart) ends its thread: :attr:`failure` holds why, and
    :meth:`wait_until_written` raises it.
    """

    def __init__(self, config: WorkerConfig, settings: Settings | None = None) -> None:
        self.config = config
        self.settings = settings or Settings.from_env()
        self._lifecycle = Lifecycle("BackgroundWorker")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"stream-logger-worker-{config.schema}", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Worker | None = None
        self._stop_requested = False
        self._looping = threading.Event()  # set once the loop runs (or the thread ended before)
        self._failure: BaseException | None = None

    @property
    def state(self) -> State:
        """NEW, STARTED, STOPPING or STOPPED."""
        return self._lifecycle.state

    @property
    def failure(self) -> BaseException | None:
        """Why the worker stopped on its own (it never does otherwise), or None."""
        return self._failure

    def start(self) -> None:
        """Start the thread; returns at once (the worker connects and joins its group there). Calling it again does
        nothing; after :meth:`stop` it raises :class:`~stream_logger.errors.LifecycleError`."""
        if not self._lifecycle.may_start():
            return
        self._lifecycle.started()
        self._thread.start()
        atexit.register(_stop_at_exit, weakref.ref(self))

    def stop(self) -> None:
        """Ask the worker to stop, and wait while it writes what it holds (within its ``shutdown_grace_s``).
        Idempotent; a worker never started is only marked stopped."""
        if not self._lifecycle.may_stop():
            return
        try:
            with self._lock:
                self._stop_requested = True
                loop, worker = self._loop, self._worker
            if loop is not None and worker is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: the worker already ended
                    loop.call_soon_threadsafe(worker.request_stop)
            self._thread.join(self.config.shutdown_grace_s + 15)
        finally:
            self._lifecycle.stopped()

    close = stop

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        if hasattr(self, "_lifecycle"):
            self._lifecycle.warn_if_running(self, f" (group {self.config.group_id}): call stop()")

    def _run(self) -> None:
        try:
            asyncio.run(self._work())
        except BaseException as exc:  # kept for the caller's thread: nothing else would see it
            self._failure = exc
        finally:
            self._looping.set()

    async def _work(self) -> None:
        worker = Worker(self.config, self.settings)
        with self._lock:
            if self._stop_requested:
                return
            self._loop, self._worker = asyncio.get_running_loop(), worker
        self._looping.set()
        try:
            async with worker:
                await worker.run()
        except Exception as exc:  # before the loop ends (and cancels a wait running on it), for the wait to say
            self._failure = exc
            raise

    def wait_until_written(self, timeout_s: float) -> None:
        """Block until the worker's group has written every message its topics hold now (rows or dead letters).

        Raises :class:`~stream_logger.errors.CatchUpTimeout` after ``timeout_s`` (nothing is lost: the worker goes
        on), :class:`~stream_logger.errors.FatalError` when the worker is not running (it stopped on a failure, or
        was never started), or the Kafka or PostgreSQL error that kept this call from reading the positions.

        The positions are read on the worker's own event loop, so this needs no thread of its own: it works at
        interpreter exit too, where Python 3.12 refuses to start threads.
        """
        deadline = time.monotonic() + timeout_s
        if self.state is State.STARTED:
            self._looping.wait(timeout_s)
        self._raise_failure()
        with self._lock:
            loop = self._loop
        if loop is None or self.state is not State.STARTED:
            raise FatalError("the in-process worker is not running: start() it first (or it was stopped)")
        try:
            future = asyncio.run_coroutine_threadsafe(self._written(deadline, timeout_s), loop)
        except RuntimeError:  # the loop is closed: the worker ended
            self._raise_failure()
            raise FatalError("the in-process worker is not running (it was stopped)") from None
        try:
            future.result(max(0.0, deadline - time.monotonic()) + _RESULT_GRACE_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise CatchUpTimeout(f"the in-process worker (group {self.config.group_id}) did not answer") from None
        except concurrent.futures.CancelledError:  # its loop ended meanwhile
            self._thread.join(_RESULT_GRACE_S)
            self._raise_failure()
            raise FatalError("the in-process worker stopped while waiting for it") from None

    async def _written(self, deadline: float, timeout_s: float) -> None:
        cfg = self.config
        ends = await asyncio.wait_for(
            end_offsets(self.settings, cfg.topics, f"stream-logger-wait-{cfg.group_id}"), max(1.0, timeout_s)
        )
        wanted = {(tp.topic, tp.partition): end for tp, end in ends.items() if end > 0}
        async with datamart.connect(self.settings.dsn) as conn:
            await datamart.require_datamart(conn, cfg.schema)
            query = (
                f'SELECT topic, "partition", next_offset FROM {quote_ident(cfg.schema)}.consumer_offsets '
                "WHERE group_id = $1 AND topic = ANY($2::text[])"
            )
            while True:
                self._raise_failure()
                rows = await conn.fetch(query, cfg.group_id, list(cfg.topics))
                stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
                behind = {key: (stored.get(key, 0), end) for key, end in wanted.items() if stored.get(key, 0) < end}
                if not behind:
                    return
                if self.state is not State.STARTED:
                    raise FatalError("the in-process worker is not running: start() it first (or it was stopped)")
                if time.monotonic() >= deadline:
                    shown = ", ".join(f"{t}[{p}] at {at} of {end}" for (t, p), (at, end) in sorted(behind.items()))
                    raise CatchUpTimeout(
                        f"the in-process worker (group {cfg.group_id}) has not written everything stored within "
                        f"{timeout_s:g} s: {shown}. Nothing is lost: the records are in Kafka and the worker goes on "
                        "(is PostgreSQL or Kafka down, or is the topic's backlog long?)"
                    )
                await asyncio.sleep(_POLL_INTERVAL_S)

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is not None:
            raise FatalError(f"the in-process worker stopped: {describe(failure)}") from failure


def _stop_at_exit(ref: weakref.ref[BackgroundWorker]) -> None:
    worker = ref()
    if worker is not None:
        worker.stop()
